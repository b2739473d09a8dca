using System.Net.Http.Headers;
using System.Text.Json;
using DiTServer.Api.Cli;
using DiTServer.Core.Imaging;
using static DiTServer.Api.Tests.JobsTestClient;

namespace DiTServer.Api.Tests;

/// <summary>Each image of a response carries what reproduces it alone (seed, index, batch_size, and the PNG's text
/// chunks), and <c>sample --index</c> regenerates exactly that image; the PNGs carry A1111's <c>parameters</c> chunk.
/// Before, every image reported the same seed and nothing said how to get image #2 back.</summary>
public sealed class ReproducibleImageTests(ReproducibleImageTests.Server server) : IClassFixture<ReproducibleImageTests.Server>, IDisposable
{
    public sealed class Server() : ServerFixture(new(("Serving:MaxBatchRows", "16")));

    private readonly string outDir = Directory.CreateTempSubdirectory("dit-repro-").FullName;

    public void Dispose() => Directory.Delete(outDir, recursive: true);

    [Fact]
    public async Task Image_two_of_three_is_regenerated_alone_by_sample_index_from_what_its_item_says()
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/v1/images")
        {
            Content = Json("""{"class_label": 5, "num_images": 3, "steps": 6, "cfg_scale": 3, "seed": 9, "sampler": "ddim", "eta": 0.5}"""),
        };
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
        var response = await server.Factory.CreateClient().SendAsync(request);
        var item = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.GetProperty("images")[2];
        Assert.Equal(2, item.GetProperty("index").GetInt32());
        int batch = item.GetProperty("batch_size").GetInt32();
        Assert.Equal(3, batch);
        var png = Convert.FromBase64String(item.GetProperty("png_base64").GetString()!);
        var text = PngWriter.ReadText(png);

        // Only what the item and its PNG say goes into the command.
        var labels = string.Join(",", Enumerable.Repeat(item.GetProperty("class_label").GetInt32(), batch));
        var stdout = new StringWriter();
        int code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", labels,
            "--seed", item.GetProperty("seed").GetInt64().ToString(),
            "--steps", text["steps"], "--cfg", text["cfg_scale"], "--sampler", text["sampler"], "--eta", text["eta"], "--guidance", text["guidance"],
            "--index", item.GetProperty("index").GetInt32().ToString(), "--out", outDir], stdout, new StringWriter());
        Assert.Equal(0, code);
        Assert.Equal("2.png", Path.GetFileName(Assert.Single(Directory.GetFiles(outDir))));
        var again = File.ReadAllBytes(Path.Combine(outDir, "2.png"));
        Assert.Equal(text, PngWriter.ReadText(again));
        Assert.Equal(png, again); // same pixels and chunks: the same bytes
    }

    [Fact]
    public async Task Pngs_carry_a1111_parameters_that_its_png_info_parses()
    {
        var response = await server.Factory.CreateClient().PostAsync("/v1/images",
            Json("""{"class_label": 4, "num_images": 2, "steps": 5, "cfg_scale": 2.5, "seed": 77, "sampler": "ddpm"}"""));
        var grid = await response.Content.ReadAsByteArrayAsync();
        var parameters = PngWriter.ReadText(grid)["parameters"];
        var lines = parameters.Split('\n');
        Assert.Equal(2, lines.Length); // prompt, then the settings line (no negative prompt)
        Assert.Equal("4", lines[0]); // the tiny model's class 4 is named "4"
        // A1111's infotext parser: "Key: value" pairs separated by ", ".
        var pairs = lines[1].Split(", ").Select(p => p.Split(": ", 2)).ToDictionary(p => p[0], p => p[1]);
        Assert.Equal("5", pairs["Steps"]);
        Assert.Equal("DDPM", pairs["Sampler"]);
        Assert.Equal("2.5", pairs["CFG scale"]);
        Assert.Equal("77", pairs["Seed"]);
        Assert.Equal("2", pairs["Batch size"]);
        Assert.False(pairs.ContainsKey("Batch pos")); // a grid is the whole batch
        Assert.Matches("^[0-9]+x[0-9]+$", pairs["Size"]);
    }

    [Fact]
    public async Task Solver_pngs_name_the_sampler_as_a1111_does_and_carry_its_settings()
    {
        var response = await server.Factory.CreateClient().PostAsync("/v1/images",
            Json("""{"class_label": 4, "steps": 6, "seed": 7, "sampler": "unipc", "order": 3, "spacing": "logsnr", "guidance_interval": [100, 700]}"""));
        var pairs = PngWriter.ReadText(await response.Content.ReadAsByteArrayAsync())["parameters"].Split('\n')[1]
            .Split(", ").Select(p => p.Split(": ", 2)).ToDictionary(p => p[0], p => p[1]);
        Assert.Equal(("UniPC", "logsnr", "3", "bh2", "100-700"),
            (pairs["Sampler"], pairs["Spacing"], pairs["Order"], pairs["UniPC variant"], pairs["Guidance interval"]));
    }

    [Fact]
    public async Task Sample_index_out_of_range_is_a_usage_error()
    {
        var stderr = new StringWriter();
        int code = await CommandLine.RunAsync(["sample", "--model", TestPaths.TinyModel, "--labels", "1,1", "--index", "2", "--out", outDir],
            new StringWriter(), stderr);
        Assert.Equal(2, code);
        Assert.Contains("--index must be in 0..1", stderr.ToString());
    }
}
