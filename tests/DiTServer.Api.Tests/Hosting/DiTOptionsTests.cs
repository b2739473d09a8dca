using Microsoft.Extensions.DependencyInjection;
using DiTServer.Api.Hosting;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Hosting;

namespace DiTServer.Api.Tests;

/// <summary>The DiT section's start-up checks: a precision the device cannot run stops the server with a clear reason.</summary>
public class DiTOptionsTests
{
    internal sealed class Environment : IHostEnvironment
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

/// <summary>A server started with DiT:Precision=bf16 serves bf16 images and says so in the PNG.</summary>
public class PrecisionServingTests
{
    [Fact]
    public async Task Bf16_server_answers_and_marks_its_pngs()
    {
        await using var factory = new ServerFactory(("DiT:Precision", "bf16"));
        using var client = factory.CreateClient();
        using var response = await client.PostAsync("/v1/images", new StringContent(
            """{"class_label": 3, "steps": 4, "seed": 1}""", System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        var png = await response.Content.ReadAsByteArrayAsync();
        Assert.Contains("precision\0bf16", System.Text.Encoding.Latin1.GetString(png));
        Assert.Equal(DiTServer.Core.Model.Precision.BFloat16, factory.Services.GetRequiredService<DiTServer.Core.Pipeline.LoadedModel>().Precision);
        var models = System.Text.Json.JsonDocument.Parse(await client.GetStringAsync("/v1/models")).RootElement;
        Assert.Equal("bf16", models.GetProperty("models")[0].GetProperty("precision").GetString());
    }
}
