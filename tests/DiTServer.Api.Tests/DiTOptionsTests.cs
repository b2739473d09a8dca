using DiTServer.Api.Hosting;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;

namespace DiTServer.Api.Tests;

/// <summary>The DiT section's start-up checks: a precision the device cannot run stops the server with a clear reason.</summary>
public class DiTOptionsTests
{
    private sealed class Environment : IHostEnvironment
    {
        public string EnvironmentName { get; set; } = "Test";
        public string ApplicationName { get; set; } = "DiTServer.Api";
        public string ContentRootPath { get; set; } = AppContext.BaseDirectory;
        public IFileProvider ContentRootFileProvider { get; set; } = new NullFileProvider();
    }

    [Theory]
    [InlineData("cpu", "tf32", false)]
    [InlineData("cuda", "tf32", true)]
    [InlineData("cpu", "bf16", true)]
    [InlineData("cpu", "fp32", true)]
    public void Tf32_is_refused_on_the_cpu(string device, string precision, bool ok)
    {
        var options = new DiTOptions { Model = TestPaths.TinyModel, Device = device, Precision = precision };
        var result = new DiTOptionsSetup(new Environment()).Validate(null, options);
        Assert.Equal(ok, result.Succeeded);
        if (!ok) Assert.Contains("tf32 needs DiT:Device cuda", result.FailureMessage);
    }
}
