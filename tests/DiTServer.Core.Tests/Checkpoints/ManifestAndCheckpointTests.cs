using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>model.json parsing, class names, strict loading errors and checkpoint writing.</summary>
public class ManifestAndCheckpointTests : IDisposable
{
    private readonly string dir = Directory.CreateTempSubdirectory("dit-manifest-").FullName;

    public void Dispose() => Directory.Delete(dir, true);

    private string Write(string json)
    {
        var path = Path.Combine(dir, "model.json");
        File.WriteAllText(path, json);
        return path;
    }

    [Fact]
    public void Fixture_manifest_resolves_relative_paths()
    {
        var m = ModelManifest.Load(Fixtures.PathOf("dit-tiny"));
        Assert.Equal(Path.GetFullPath(Fixtures.PathOf("dit-tiny/model.pt")), m.WeightsPath);
        Assert.Equal(Path.GetFullPath(Fixtures.PathOf("vae-tiny")), m.VaePath);
        Assert.Equal((8, 2, 64, 2, 4, 10, true),
            (m.Config.InputSize, m.Config.PatchSize, m.Config.HiddenSize, m.Config.Depth, m.Config.NumHeads, m.Config.NumClasses, m.Config.LearnSigma));
    }

    [Fact]
    public void Preset_manifest_takes_preset_sizes()
    {
        File.WriteAllBytes(Path.Combine(dir, "w.safetensors"), []);
        var m = ModelManifest.Load(Write("""{ "architecture": "DiT-XL/2", "input_size": 32, "weights": "w.safetensors", "vae": null }"""));
        Assert.Equal("DiT-XL/2", m.ArchitectureName);
        Assert.Equal((28, 1152, 16, 2, 1000), (m.Config.Depth, m.Config.HiddenSize, m.Config.NumHeads, m.Config.PatchSize, m.Config.NumClasses));
    }

    [Theory]
    [InlineData("""{ "architecture": "DiT-Q/2", "weights": "w.pt", "vae": null }""", "unknown DiT architecture")]
    [InlineData("""{ "weights": "w.pt", "vae": null }""", "'architecture' is required")]
    [InlineData("""{ "architecture": "DiT-S/2", "vae": null }""", "'weights' is required")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "missing.pt", "vae": null }""", "does not exist")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt" }""", "'vae' is required")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": "nowhere" }""", "is not a folder")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "input_size": "big" }""", "'input_size' must be an integer")]
    [InlineData("""{ "architecture": "DiT-S/8", "weights": "w.pt", "vae": null, "input_size": 12 }""", "divisible by patch_size")]
    [InlineData("""{ "architecture": { "depth": 2, "hidden_size": 30, "num_heads": 4, "patch_size": 2 }, "weights": "w.pt", "vae": null }""",
        "multiple of num_heads")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "default_cache": 3 }""", "'default_cache' must be an object")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "default_cache": { "min_steps": 20 } }""",
        "'default_cache.interval' is required")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "default_cache": { "interval": 1, "min_steps": 20 } }""",
        "'default_cache.interval' must be in 2..1000")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "default_cache": { "interval": 3, "mode": "x", "min_steps": 2 } }""",
        "'default_cache.mode' must be")]
    [InlineData("""{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "default_cache": { "interval": 3 } }""",
        "'default_cache.min_steps' is required")]
    [InlineData("""[1, 2]""", "must be a JSON object")]
    [InlineData("""{ "architecture": """, "malformed JSON")]
    public void Bad_manifests_fail_with_the_field_named(string json, string expected)
    {
        File.WriteAllBytes(Path.Combine(dir, "w.pt"), []);
        var e = Assert.Throws<InvalidDataException>(() => ModelManifest.Load(Write(json)));
        Assert.Contains(expected, e.Message);
    }

    [Fact]
    public void A_cache_default_is_read_and_its_absence_is_none()
    {
        File.WriteAllBytes(Path.Combine(dir, "w.safetensors"), []);
        var m = ModelManifest.Load(Write("""
            { "architecture": "DiT-S/2", "weights": "w.safetensors", "vae": null,
              "default_cache": { "interval": 3, "mode": "taylor", "min_steps": 50 } }
            """));
        Assert.Equal(new Sampling.CacheDefault(3, Sampling.CacheMode.Taylor, 50), m.DefaultCache);
        m = ModelManifest.Load(Write(
            """{ "architecture": "DiT-S/2", "weights": "w.safetensors", "vae": null, "default_cache": { "interval": 2, "min_steps": 20 } }"""));
        Assert.Equal(new Sampling.CacheDefault(2, Sampling.CacheMode.Reuse, 20), m.DefaultCache); // mode: reuse unless named
        Assert.Null(ModelManifest.Load(Write("""{ "architecture": "DiT-S/2", "weights": "w.safetensors", "vae": null }""")).DefaultCache);
    }

    [Fact]
    public void Missing_folder_says_so()
    {
        var e = Assert.Throws<InvalidDataException>(() => ModelManifest.Load(Path.Combine(dir, "nope")));
        Assert.Contains("neither a folder with model.json nor a manifest file", e.Message);
    }

    [Fact]
    public void Class_count_must_match_num_classes()
    {
        File.WriteAllLines(Path.Combine(dir, "names.txt"), new[] { "a", "b" });
        var json = $$"""{ "architecture": { "depth": 2, "hidden_size": 64, "num_heads": 4, "patch_size": 2 }, "input_size": 8, "num_classes": """ +
            $$"""10, "weights": "{{Fixtures.PathOf("dit-tiny/model.safetensors")}}", "vae": null, "class_names": "names.txt" }""";
        var e = Assert.Throws<InvalidDataException>(() => LoadedModel.Load(Write(json)));
        Assert.Contains("lists 2 classes but num_classes is 10", e.Message);
    }

    [Fact]
    public void ImageNet_names_resolve_by_index_name_and_alias()
    {
        var names = ClassNames.ImageNet;
        Assert.Equal(1000, names.Count);
        Assert.Equal("golden retriever", names[207]);
        Assert.True(names.TryResolve("Golden Retriever", 1000, out var a, out _));
        Assert.True(names.TryResolve("Carassius auratus", 1000, out var b, out _)); // an alias of goldfish
        Assert.True(names.TryResolve("974", 1000, out var c, out _));
        Assert.Equal((207, 1, 974), (a, b, c));
        Assert.False(names.TryResolve("golden retreiver", 1000, out _, out var error));
        Assert.Contains("golden retriever", error);
        Assert.False(names.TryResolve("1000", 1000, out _, out error));
        Assert.Contains("0..999", error);
    }

    [Fact]
    public void Strict_loading_names_missing_unexpected_and_misshaped_keys()
    {
        using var model = new DiT(DiTParityTests.TinyConfig);
        using var scope = NewDisposeScope();
        var sd = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/model.safetensors"));

        var missing = new Dictionary<string, Tensor>(sd);
        missing.Remove("blocks.1.attn.qkv.bias");
        Assert.Contains("missing 1 key(s): blocks.1.attn.qkv.bias",
            Assert.Throws<StateDictMismatchException>(() => StateDict.LoadStrict(model, missing, "w")).Message);

        var extra = new Dictionary<string, Tensor>(sd) { ["blocks.2.attn.qkv.bias"] = zeros(192) };
        Assert.Contains("unexpected 1 key(s): blocks.2.attn.qkv.bias",
            Assert.Throws<StateDictMismatchException>(() => StateDict.LoadStrict(model, extra, "w")).Message);

        var shaped = new Dictionary<string, Tensor>(sd) { ["final_layer.linear.weight"] = zeros(16, 64) };
        Assert.Contains("'final_layer.linear.weight' has shape [16, 64] in the file but the model expects [32, 64]",
            Assert.Throws<StateDictMismatchException>(() => StateDict.LoadStrict(model, shaped, "w")).Message);
    }

    [Fact]
    public void Written_safetensors_and_pickles_round_trip_exactly()
    {
        using var scope = NewDisposeScope();
        var sd = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/model.pt"));
        string st = Path.Combine(dir, "m.safetensors"), pt = Path.Combine(dir, "m.pt"), ckpt = Path.Combine(dir, "ckpt.pt");
        CheckpointFile.SaveSafetensors(st, sd);
        CheckpointFile.SavePickle(pt, sd);
        CheckpointFile.SavePickle(ckpt, new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { ["model"] = sd, ["ema"] = sd });
        foreach (var path in new[] { st, pt, ckpt })
        {
            var back = CheckpointFile.LoadStateDict(path);
            Assert.Equal(sd.Count, back.Count);
            foreach (var (k, v) in sd) Assert.True(v.equal(back[k]).all().item<bool>(), $"{path}: {k}");
        }
    }

    [Fact]
    public void A_non_state_dict_pickle_is_rejected_clearly()
    {
        var bad = Path.Combine(dir, "bad.pt");
        File.WriteAllText(bad, "not a pickle");
        var e = Assert.Throws<InvalidDataException>(() => CheckpointFile.LoadStateDict(bad));
        Assert.Contains("cannot read weights", e.Message);
    }
}
