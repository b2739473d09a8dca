using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The DiT forward pass against the official models.py on the fixtures' tiny random models.</summary>
public class DiTParityTests
{
    internal static DiTConfig TinyConfig => new()
    {
        InputSize = 8, PatchSize = 2, InChannels = 4, HiddenSize = 64, Depth = 2, NumHeads = 4, NumClasses = 10, LearnSigma = true,
    };

    internal static DiT LoadTiny(string weights)
    {
        var model = new DiT(TinyConfig);
        using var scope = NewDisposeScope();
        StateDict.LoadStrict(model, CheckpointFile.LoadStateDict(Fixtures.PathOf(weights)), weights);
        model.eval();
        return model;
    }

    [Theory]
    [InlineData("dit-tiny/model.pt")]
    [InlineData("dit-tiny/model.safetensors")]
    public void Forward_matches_official(string weights)
    {
        using var model = LoadTiny(weights);
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load("dit-tiny/forward.safetensors");
        Fixtures.AssertClose(f["out"], model.forward(f["x"], f["t"], f["y"]));
    }

    [Fact]
    public void Forward_with_cfg_matches_official()
    {
        using var model = LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load("dit-tiny/forward.safetensors");
        Fixtures.AssertClose(f["cfg_out"], model.ForwardWithCfg(f["cfg_x"], f["cfg_t"], f["cfg_y"], 4.0));
    }

    [Fact]
    public void Train_checkpoint_serves_ema_not_model()
    {
        using var scope = NewDisposeScope();
        var fromCkpt = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/train_ckpt.pt"));
        var ema = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/train_ckpt_ema.safetensors"));
        Assert.Equal(ema.Keys.OrderBy(k => k), fromCkpt.Keys.OrderBy(k => k));
        foreach (var (k, v) in ema) Assert.True(v.equal(fromCkpt[k]).all().item<bool>(), k);

        var extraModel = CheckpointFile.LoadStateDict(Fixtures.PathOf("extra/dit_tiny/train_ckpt.pt"));
        var extraOnlyModel = CheckpointFile.LoadStateDict(Fixtures.PathOf("extra/dit_tiny/train_ckpt_model.safetensors"));
        var extraEma = CheckpointFile.LoadStateDict(Fixtures.PathOf("extra/dit_tiny/model.safetensors"));
        // The extra checkpoint's "model" took one AdamW step, so only "ema" matches model.safetensors.
        Assert.Contains(extraEma.Keys, k => !extraOnlyModel[k].equal(extraEma[k]).all().item<bool>());
        foreach (var (k, v) in extraEma) Assert.True(v.equal(extraModel[k]).all().item<bool>(), k);
    }

    [Fact]
    public void Extra_model_intermediates_and_cfg_quirks_match()
    {
        using var model = LoadTiny("extra/dit_tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load("extra/dit_tiny/forward.safetensors");
        var inter = Fixtures.Load("extra/dit_tiny/intermediates.safetensors");
        Fixtures.AssertClose(inter["t_freq"], TimestepEmbedder.TimestepEmbedding(f["t"], 256));
        Fixtures.AssertClose(f["out"], model.forward(f["x"], f["t"], f["y"]));
        Fixtures.AssertClose(f["cfg_raw_out"], model.forward(f["cfg_x"], f["cfg_t"], f["cfg_y"]));
        Fixtures.AssertClose(f["cfg_out"], model.ForwardWithCfg(f["cfg_x"], f["cfg_t"], f["cfg_y"], 4.0));
        // forward_with_cfg ignores the second half of x.
        Fixtures.AssertClose(f["cfg_asym_out"], model.ForwardWithCfg(f["cfg_asym_x"], f["cfg_t"], f["cfg_y"], 4.0));
    }

    [Fact]
    public void Position_embedding_equals_checkpoint_copy()
    {
        using var scope = NewDisposeScope();
        var sd = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/model.safetensors"));
        Fixtures.AssertClose(sd["pos_embed"].squeeze(0), PositionEmbedding.SinCos2D(64, 4), 1e-6);
    }

    [Fact]
    public void State_dict_keys_equal_official_keys()
    {
        using var model = new DiT(TinyConfig);
        using var scope = NewDisposeScope();
        var official = CheckpointFile.LoadStateDict(Fixtures.PathOf("dit-tiny/model.safetensors"));
        Assert.Equal(official.Keys.OrderBy(k => k, StringComparer.Ordinal), model.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (k, v) in model.state_dict()) Assert.Equal(official[k].shape, v.shape);
    }

    [Fact]
    public void Guided_forward_of_per_row_denoiser_equals_official_cfg()
    {
        using var model = LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load("dit-tiny/forward.safetensors");
        var x = f["cfg_x"][..2];
        var output = Sampling.Denoiser.Forward(model, x, f["cfg_t"][..2], f["cfg_y"][..2], new[] { 4.0, 4.0 }, GuidanceMode.Official);
        Fixtures.AssertClose(f["cfg_out"][..2], output);
    }

    [Fact]
    public void Guidance_all_mixes_every_eps_channel_only()
    {
        using var model = LoadTiny("dit-tiny/model.pt");
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var f = Fixtures.Load("dit-tiny/forward.safetensors");
        var x = f["cfg_x"];
        var raw = model.forward(x, f["cfg_t"], f["cfg_y"]);
        var all = model.ForwardWithCfg(x, f["cfg_t"], f["cfg_y"], 4.0, GuidanceMode.All);
        var expectedEps = raw[2..4, ..4] + 4.0 * (raw[..2, ..4] - raw[2..4, ..4]);
        Fixtures.AssertClose(expectedEps, all[..2, ..4], 1e-5);
        Fixtures.AssertClose(raw[..2, 4..], all[..2, 4..], 1e-6); // variance channels stay conditional
    }

    [Fact]
    public void Initialization_follows_official_rules()
    {
        using var model = new DiT(TinyConfig);
        using var scope = NewDisposeScope();
        var sd = model.state_dict();
        foreach (var key in new[] { "blocks.0.adaLN_modulation.1.weight", "blocks.1.adaLN_modulation.1.bias", "final_layer.linear.weight",
            "final_layer.adaLN_modulation.1.weight", "x_embedder.proj.bias" })
            Assert.Equal(0.0, sd[key].abs().max().item<float>());
        var table = sd["y_embedder.embedding_table.weight"];
        Assert.InRange(table.std().item<float>(), 0.015, 0.025);
        // Xavier-uniform bound sqrt(6 / (fan_in + fan_out)) for qkv (64 → 192).
        Assert.InRange(sd["blocks.0.attn.qkv.weight"].abs().max().item<float>(), 0.1, Math.Sqrt(6.0 / 256) + 1e-6);
        // A fresh model outputs zeros: adaLN-Zero and the zeroed final layer.
        using var _ = no_grad();
        var output = model.forward(randn(2, 4, 8, 8), tensor(new long[] { 1, 500 }), tensor(new long[] { 0, 10 }));
        Assert.Equal(0.0, output.abs().max().item<float>());
    }

    [Theory]
    [InlineData("DiT-XL/2", 28, 1152, 16, 2)]
    [InlineData("DiT-L/4", 24, 1024, 16, 4)]
    [InlineData("DiT-B/8", 12, 768, 12, 8)]
    [InlineData("dit-s/2", 12, 384, 6, 2)]
    public void Presets_have_official_sizes(string name, int depth, int hidden, int heads, int patch)
    {
        var c = DiTConfig.FromPreset(name);
        Assert.Equal((depth, hidden, heads, patch), (c.Depth, c.HiddenSize, c.NumHeads, c.PatchSize));
        Assert.Equal(12, DiTConfig.Presets.Count);
    }

    [Fact]
    public void Small_preset_builds_with_official_shapes_for_pixel_models()
    {
        // A 1-channel pixel-space DiT-S/4 at 28×28 (not a multiple of 8: a custom size the hidden checks may use).
        var config = DiTConfig.FromPreset("DiT-S/4") with { InputSize = 28, InChannels = 1, NumClasses = 10 };
        using var model = new DiT(config);
        using var scope = NewDisposeScope();
        var sd = model.state_dict();
        Assert.Equal(new long[] { 1, 49, 384 }, sd["pos_embed"].shape);
        Assert.Equal(new long[] { 4 * 4 * 2, 384 }, sd["final_layer.linear.weight"].shape);
        Assert.Equal(new long[] { 11, 384 }, sd["y_embedder.embedding_table.weight"].shape);
        using var _ = no_grad();
        Assert.Equal(new long[] { 3, 2, 28, 28 }, model.forward(randn(3, 1, 28, 28), tensor(new long[] { 0, 1, 2 }), tensor(new long[] { 0, 1, 10 })).shape);
    }
}
