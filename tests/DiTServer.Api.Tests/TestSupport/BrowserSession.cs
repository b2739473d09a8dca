using System.Net;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace DiTServer.Api.Tests;

/// <summary>What every browser test starts with: its <see cref="ServerFactory"/> on real Kestrel (loopback, a free port;
/// the test server has no socket a browser could reach) and headless Chromium (Debian's, see
/// <see cref="ChromiumFactAttribute"/>).</summary>
internal sealed class BrowserSession : IAsyncDisposable
{
    private static readonly string[] ChromiumArgs =
    [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ];

    private readonly IPlaywright playwright;

    private BrowserSession(string address, IPlaywright playwright, IBrowser browser)
    {
        Address = address;
        this.playwright = playwright;
        Browser = browser;
    }

    /// <summary>The server's base address, <c>http://127.0.0.1:port</c>.</summary>
    public string Address { get; }

    public IBrowser Browser { get; }

    /// <summary>Starts <paramref name="factory"/> on Kestrel, then the browser. The factory stays the caller's to dispose.</summary>
    public static async Task<BrowserSession> StartAsync(ServerFactory factory)
    {
        factory.UseKestrel(o => o.Listen(IPAddress.Loopback, 0));
        factory.StartServer();
        var address = factory.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        var playwright = await Playwright.CreateAsync();
        try
        {
            var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
            {
                ExecutablePath = ChromiumFactAttribute.Executable, Headless = true, Args = ChromiumArgs, Timeout = 60_000,
            });
            return new BrowserSession(address, playwright, browser);
        }
        catch
        {
            playwright.Dispose();
            throw;
        }
    }

    public async ValueTask DisposeAsync()
    {
        await Browser.DisposeAsync();
        playwright.Dispose();
    }
}
