namespace DiTServer.Api.Tests;

/// <summary>One <see cref="ServerFactory"/> for all the tests of a class (an xUnit class fixture, disposed after the
/// class's last test). A class that needs its own settings derives a nested <c>Server</c> that passes its factory.</summary>
public class ServerFixture : IDisposable
{
    /// <summary>The default server: the tiny model, the configuration's serving settings.</summary>
    public ServerFixture() : this(new ServerFactory()) { }

    protected ServerFixture(ServerFactory factory) => Factory = factory;

    public ServerFactory Factory { get; }

    public virtual void Dispose()
    {
        Factory.Dispose();
        GC.SuppressFinalize(this);
    }
}
