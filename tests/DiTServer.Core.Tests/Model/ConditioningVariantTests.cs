using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Diffusion;
using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The paper's four conditioning designs: each builds, uses t and y, trains, and round-trips through model.json.</summary>
public class ConditioningVariantTests
{
    public static IEnumerable<object[]> Variants() => Enum.GetValues<Conditioning>().Select(c => new object[] { c });

    private static DiTConfig Config(Conditioning c) => DiTParityTests.TinyConfig with { Conditioning = c, HiddenSize = 32, Depth = 2 };

    [Theory]
    [MemberData(nameof(Variants))]
    public void Output_depends_on_timestep_and_label(Conditioning c)
    {
        using var model = new DiT(Config(c));
        using var scope = NewDisposeScope();
        model.RandomizeWeights(0.1);
        model.eval();
        using var _ = no_grad();
        var x = randn(1, 4, 8, 8);
        var a = model.forward(x, tensor(new long[] { 10 }), tensor(new long[] { 1 }));
        var b = model.forward(x, tensor(new long[] { 10 }), tensor(new long[] { 2 }));
        var d = model.forward(x, tensor(new long[] { 900 }), tensor(new long[] { 1 }));
        Assert.Equal(new long[] { 1, 8, 8, 8 }, a.shape);
        Assert.True((a - b).abs().max().item<float>() > 1e-4, "label must change the output");
        Assert.True((a - d).abs().max().item<float>() > 1e-4, "timestep must change the output");
    }

    [Theory]
    [MemberData(nameof(Variants))]
    public void A_few_optimizer_steps_lower_the_loss_on_a_fixed_batch(Conditioning c)
    {
        torch.manual_seed(5);
        using var model = new DiT(Config(c));
        using var opt = torch.optim.AdamW(model.parameters(), lr: 1e-2);
        var diffusion = GaussianDiffusion.Create("");
        using var g = new Generator(9);
        using var x0 = randn(new long[] { 8, 4, 8, 8 }, generator: g).clamp(-1, 1);
        using var noise = randn(new long[] { 8, 4, 8, 8 }, generator: g);
        using var t = randint(0, 1000, new long[] { 8 }, generator: g);
        using var y = randint(0, 10, new long[] { 8 }, generator: g);
        model.train();
        double first = 0, last = 0;
        for (int step = 0; step < 15; step++)
        {
            using var scope = NewDisposeScope();
            opt.zero_grad();
            var loss = diffusion.TrainingLosses((xt, tm) => model.forward(xt, tm, y), x0, t, noise).Loss.mean();
            loss.backward();
            opt.step();
            if (step == 0) first = loss.item<float>();
            last = loss.item<float>();
        }
        Assert.True(last < first, $"{c}: loss {first:F4} → {last:F4}");
    }

    [Theory]
    [InlineData("adaLN-Zero", Conditioning.AdaLNZero)]
    [InlineData("adaln", Conditioning.AdaLN)]
    [InlineData("cross-attention", Conditioning.CrossAttention)]
    [InlineData("In-Context", Conditioning.InContext)]
    public void Manifest_conditioning_selects_the_variant_and_loads_its_weights(string name, Conditioning expected)
    {
        var dir = Directory.CreateTempSubdirectory("dit-cond-").FullName;
        try
        {
            var config = Config(expected);
            using (var model = new DiT(config))
                CheckpointFile.SaveSafetensors(Path.Combine(dir, "w.safetensors"), model.state_dict());
            File.WriteAllText(Path.Combine(dir, "model.json"), $$"""
                { "architecture": { "depth": 2, "hidden_size": 32, "num_heads": 4, "patch_size": 2 }, "input_size": 8,
                  "num_classes": 10, "weights": "w.safetensors", "vae": null, "conditioning": "{{name}}" }
                """);
            using var loaded = LoadedModel.Load(dir);
            Assert.Equal(expected, loaded.Config.Conditioning);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Unknown_conditioning_is_rejected_with_the_choices()
    {
        var dir = Directory.CreateTempSubdirectory("dit-cond-").FullName;
        try
        {
            File.WriteAllBytes(Path.Combine(dir, "w.pt"), []);
            File.WriteAllText(Path.Combine(dir, "model.json"), """{ "architecture": "DiT-S/2", "weights": "w.pt", "vae": null, "conditioning": "film" }""");
            var e = Assert.Throws<InvalidDataException>(() => ModelManifest.Load(dir));
            Assert.Contains("unknown conditioning 'film'", e.Message);
            Assert.Contains("cross-attention", e.Message);
        }
        finally { Directory.Delete(dir, true); }
    }

    [Fact]
    public void Variants_have_distinct_parameter_layouts()
    {
        using var zero = new DiT(Config(Conditioning.AdaLNZero));
        using var cross = new DiT(Config(Conditioning.CrossAttention));
        using var inContext = new DiT(Config(Conditioning.InContext));
        Assert.Contains("blocks.0.cross_attn.kv.weight", cross.state_dict().Keys);
        Assert.Contains("final_layer.norm_final.weight", inContext.state_dict().Keys);
        Assert.DoesNotContain("blocks.0.adaLN_modulation.1.weight", inContext.state_dict().Keys);
        Assert.Contains("blocks.0.adaLN_modulation.1.weight", zero.state_dict().Keys);
    }
}
