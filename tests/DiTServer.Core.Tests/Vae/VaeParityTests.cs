using DiTServer.Core.Checkpoints;
using DiTServer.Core.Vae;
using TorchSharp;
using TorchSharp.PyBridge;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>The C# AutoencoderKL against diffusers' outputs on the tiny random-weight VAEs in shared/fixtures.</summary>
public sealed class VaeParityTests(ITestOutputHelper output)
{
    private const double ScalingFactor = 0.18215;
    private static readonly string TinyFolder = Fixtures.PathOf("vae-tiny");
    private static readonly string F8Folder = Fixtures.PathOf("extra/vae_tiny_f8");

    /// <summary>Logs the relative error (so runs report the measured margin) and asserts it is ≤ 1e-4.</summary>
    private void Check(Tensor expected, Tensor actual, string what)
    {
        double rel = Fixtures.RelativeError(actual, expected);
        output.WriteLine($"{what}: relative error {rel:E3}");
        Assert.True(rel <= 1e-4, $"{what}: relative error {rel:E3} > 1e-4");
    }

    [Fact]
    public void VaeTiny_StateDictKeys_EqualDiffusersKeys()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(TinyFolder));
        var file = Safetensors.LoadStateDict(Path.Combine(TinyFolder, AutoencoderKL.SafetensorsFileName));
        var model = vae.state_dict();
        Assert.Equal(file.Keys.OrderBy(k => k, StringComparer.Ordinal), model.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, t) in file) Assert.Equal(t.shape, model[key].shape);
    }

    [Fact]
    public void VaeTinyF8_StateDictKeys_EqualDiffusersKeys()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(F8Folder));
        var file = Safetensors.LoadStateDict(Path.Combine(F8Folder, AutoencoderKL.SafetensorsFileName));
        var model = vae.state_dict();
        Assert.Equal(file.Keys.OrderBy(k => k, StringComparer.Ordinal), model.Keys.OrderBy(k => k, StringComparer.Ordinal));
        foreach (var (key, t) in file) Assert.Equal(t.shape, model[key].shape);
    }

    [Fact]
    public void VaeTiny_Decode_MatchesDiffusers()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(TinyFolder);
        var io = Fixtures.Load("vae-tiny/io.safetensors");
        Assert.Equal(ScalingFactor, vae.Config.ScalingFactor);
        Check(io["decoded"], vae.Decode(io["z"] / ScalingFactor), "vae-tiny decoded");
    }

    [Fact]
    public void VaeTiny_Encode_MatchesDiffusersLatentDist()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(TinyFolder);
        var io = Fixtures.Load("vae-tiny/io.safetensors");
        var (mean, std, logVar) = vae.Encode(io["image"]);
        Check(io["latent_mean"], mean, "vae-tiny latent_mean");
        Check(io["latent_std"], std, "vae-tiny latent_std");
        Check((io["latent_std"].log() * 2), logVar, "vae-tiny logvar (from latent_std)");
    }

    [Fact]
    public void VaeTiny_LegacyAttentionNames_LoadAndDecodeTheSame()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(Path.Combine(TinyFolder, "legacy-names"));
        var io = Fixtures.Load("vae-tiny/io.safetensors");
        Check(io["decoded"], vae.Decode(io["z"] / ScalingFactor), "vae-tiny legacy-names decoded");
    }

    [Fact]
    public void VaeTiny_ConvShapedAttentionWeights_LoadAndDecodeTheSame()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        var weights = Safetensors.LoadStateDict(Path.Combine(TinyFolder, "legacy-names", AutoencoderKL.SafetensorsFileName));
        // Old LDM-converted files keep q/k/v/proj as 1×1 conv kernels [C, C, 1, 1].
        var convStyle = weights.ToDictionary(kv => kv.Key, kv =>
            kv.Key.Contains(".attentions.") && kv.Key.EndsWith(".weight") && kv.Value.dim() == 2
                ? kv.Value.reshape(kv.Value.shape[0], kv.Value.shape[1], 1, 1)
                : kv.Value);
        Assert.Contains(convStyle.Values, t => t.dim() == 4 && t.shape[2] == 1 && t.shape[0] == 64 && t.shape[1] == 64);
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(TinyFolder));
        vae.LoadWeights(convStyle, "conv-style VAE");
        var io = Fixtures.Load("vae-tiny/io.safetensors");
        Check(io["decoded"], vae.Decode(io["z"] / ScalingFactor), "vae-tiny conv-style attention decoded");
    }

    [Fact]
    public void VaeTiny_PickleBin_LoadsAndDecodesTheSame()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        string folder = Directory.CreateTempSubdirectory("vae-bin-").FullName;
        try
        {
            File.Copy(Path.Combine(TinyFolder, "config.json"), Path.Combine(folder, "config.json"));
            var weights = Safetensors.LoadStateDict(Path.Combine(TinyFolder, AutoencoderKL.SafetensorsFileName));
            PyTorchPickler.PickleStateDict(Path.Combine(folder, AutoencoderKL.PickleFileName), weights);
            using var vae = AutoencoderKL.FromFolder(folder);
            var io = Fixtures.Load("vae-tiny/io.safetensors");
            Check(io["decoded"], vae.Decode(io["z"] / ScalingFactor), "vae-tiny .bin decoded");
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void VaeTinyF8_Decode_MatchesDiffusers()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(F8Folder);
        Assert.Equal(8, vae.Config.DownsamplingFactor);
        var io = Fixtures.Load("extra/vae_tiny_f8/io.safetensors");
        Check(io["decode_z"], vae.Decode(io["z"]), "f8 decode_z");
        Check(io["decode_z_over_0.18215"], vae.Decode(io["z"] / ScalingFactor), "f8 decode_z_over_0.18215");
        Check(io["decode_z_batch_over_0.18215"], vae.Decode(io["z_batch"] / ScalingFactor), "f8 decode_z_batch_over_0.18215");
    }

    [Fact]
    public void VaeTinyF8_Encode_MatchesDiffusersLatentDist()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(F8Folder);
        var io = Fixtures.Load("extra/vae_tiny_f8/io.safetensors");
        var (mean, std, logVar) = vae.Encode(io["image"]);
        Check(io["encode_mean"], mean, "f8 encode_mean");
        Check(io["encode_std"], std, "f8 encode_std");
        Check(io["encode_logvar"], logVar, "f8 encode_logvar");
        // latent_dist.sample = mean + std·eps; the recorded eps replaces the draw.
        Check(io["encode_sample"], mean + std * io["encode_sample_eps"], "f8 encode_sample");
    }

    [Fact]
    public void VaeTinyF8_Forward_IsReconstructionThroughMean()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(F8Folder);
        var io = Fixtures.Load("extra/vae_tiny_f8/io.safetensors");
        Check(io["forward_mode_reconstruction"], vae.forward(io["image"]), "f8 forward_mode_reconstruction");
    }

    [Fact]
    public void EncodeSample_DrawsEpsFromTheGivenGenerator()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        using var vae = AutoencoderKL.FromFolder(F8Folder);
        var image = Fixtures.Load("extra/vae_tiny_f8/io.safetensors")["image"];
        var sample = vae.EncodeSample(image, new Generator(1234));
        var again = vae.EncodeSample(image, new Generator(1234));
        var (mean, std, _) = vae.Encode(image);
        var eps = randn(mean.shape, generator: new Generator(1234));
        Assert.True(sample.equal(again).all().item<bool>());
        Check(mean + std * eps, sample, "EncodeSample vs mean + std·randn(seed 1234)");
    }

    [Fact]
    public void FromFolder_FreesLoadedTensors_AndParametersOutliveCallerScope()
    {
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        AutoencoderKL vae;
        using (NewDisposeScope()) vae = AutoencoderKL.FromFolder(F8Folder);
        try
        {
            // Only the model's own parameters remain: the file's tensors and the renamed copies were disposed.
            Assert.Equal(vae.parameters().Count(), DisposeScopeManager.Statistics.ThreadTotalLiveCount - before);
            using var scope = NewDisposeScope();
            using var _ = no_grad();
            var io = Fixtures.Load("extra/vae_tiny_f8/io.safetensors");
            Check(io["decode_z"], vae.Decode(io["z"]), "f8 decode_z after the loading scope ended");
        }
        finally
        {
            vae.Dispose();
        }
    }

    [Fact]
    public void StableDiffusionLayout_Has248KeysAndDecodes8x()
    {
        using var scope = NewDisposeScope();
        using var _ = no_grad();
        // 244 keys of vae_tiny_f8 (same depth) + 2 more 1×1 shortcuts: 128→256 (encoder level 1) and 256→128 (decoder level 3).
        using var vae = new AutoencoderKL(VaeConfig.StableDiffusion);
        var keys = vae.state_dict().Keys.ToList();
        Assert.Equal(248, keys.Count);
        Assert.Contains("encoder.down_blocks.1.resnets.0.conv_shortcut.weight", keys);
        Assert.Contains("encoder.down_blocks.2.resnets.0.conv_shortcut.weight", keys);
        Assert.Contains("decoder.up_blocks.2.resnets.0.conv_shortcut.weight", keys);
        Assert.Contains("decoder.up_blocks.3.resnets.0.conv_shortcut.weight", keys);
        Assert.Contains("decoder.up_blocks.0.resnets.2.conv2.weight", keys);
        Assert.DoesNotContain("encoder.down_blocks.3.downsamplers.0.conv.weight", keys);
        Assert.DoesNotContain("decoder.up_blocks.3.upsamplers.0.conv.weight", keys);
        vae.eval();
        var image = vae.Decode(randn(1, 4, 4, 4, generator: new Generator(0)));
        Assert.Equal(new long[] { 1, 3, 32, 32 }, image.shape);
    }

    [Fact]
    public void VaeConfig_ParsesStableDiffusionConfigJson()
    {
        const string json = """
            {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
             "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
             "in_channels": 3, "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3,
             "sample_size": 256, "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]}
            """;
        var config = VaeConfig.Parse(json);
        Assert.Equal(VaeConfig.StableDiffusion.BlockOutChannels, config.BlockOutChannels);
        Assert.Equal(2, config.LayersPerBlock);
        Assert.Equal(0.18215, config.ScalingFactor); // absent in the original sd-vae-ft-* config.json: the default
        Assert.Equal(32, config.NormNumGroups);
        Assert.Equal(VaeConfig.StableDiffusion, config); // value equality, lists compared element-wise
    }

    [Theory]
    [InlineData("""{"block_out_channels": [32], "act_fn": "gelu"}""", "act_fn")]
    [InlineData("""{"block_out_channels": [32], "down_block_types": ["AttnDownEncoderBlock2D"]}""", "down_block_types")]
    [InlineData("""{"block_out_channels": [32], "up_block_types": ["AttnUpDecoderBlock2D"]}""", "up_block_types")]
    [InlineData("""{"block_out_channels": [32, 64], "up_block_types": ["UpDecoderBlock2D"]}""", "up_block_types")]
    [InlineData("""{"block_out_channels": [32], "use_quant_conv": false}""", "use_quant_conv")]
    [InlineData("""{"block_out_channels": [32], "layers_per_block": "two"}""", "layers_per_block")]
    [InlineData("""{"block_out_channels": [40]}""", "norm_num_groups")]
    public void VaeConfig_RejectsUnsupportedFields_NamingThem(string json, string field)
    {
        var e = Assert.Throws<InvalidDataException>(() => VaeConfig.Parse(json));
        Assert.Contains(field, e.Message);
    }

    [Fact]
    public void StrictLoad_MissingKey_NamesIt()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(TinyFolder));
        var weights = Safetensors.LoadStateDict(Path.Combine(TinyFolder, AutoencoderKL.SafetensorsFileName));
        const string key = "decoder.up_blocks.1.resnets.0.conv_shortcut.weight";
        Assert.True(weights.Remove(key));
        var e = Assert.Throws<StateDictMismatchException>(() => vae.LoadWeights(weights, "test VAE"));
        Assert.Contains(key, e.Message);
        Assert.Contains("missing", e.Message);
    }

    [Fact]
    public void StrictLoad_ExtraKey_NamesIt()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(TinyFolder));
        var weights = Safetensors.LoadStateDict(Path.Combine(TinyFolder, AutoencoderKL.SafetensorsFileName));
        const string key = "encoder.down_blocks.1.downsamplers.0.conv.weight"; // the last level has no downsampler
        weights[key] = zeros(64, 64, 3, 3);
        var e = Assert.Throws<StateDictMismatchException>(() => vae.LoadWeights(weights, "test VAE"));
        Assert.Contains(key, e.Message);
        Assert.Contains("unexpected", e.Message);
    }

    [Fact]
    public void StrictLoad_WrongShape_NamesKeyAndBothShapes()
    {
        using var scope = NewDisposeScope();
        using var vae = new AutoencoderKL(VaeConfig.FromFolder(TinyFolder));
        var weights = Safetensors.LoadStateDict(Path.Combine(TinyFolder, AutoencoderKL.SafetensorsFileName));
        const string key = "encoder.mid_block.attentions.0.to_q.weight";
        weights[key] = zeros(64, 32);
        var e = Assert.Throws<StateDictMismatchException>(() => vae.LoadWeights(weights, "test VAE"));
        Assert.Contains(key, e.Message);
        Assert.Contains("[64, 32]", e.Message);
        Assert.Contains("[64, 64]", e.Message);
    }

    [Fact]
    public void NormalizeKeys_OldAndNewAttentionNamesMixed_NamesBoth()
    {
        using var scope = NewDisposeScope();
        var weights = new Dictionary<string, Tensor>
        {
            ["encoder.mid_block.attentions.0.query.weight"] = zeros(64, 64),
            ["encoder.mid_block.attentions.0.to_q.weight"] = zeros(64, 64),
        };
        var e = Assert.Throws<StateDictMismatchException>(() => AutoencoderKL.NormalizeKeys(weights, "test VAE"));
        Assert.Contains("encoder.mid_block.attentions.0.query.weight", e.Message);
        Assert.Contains("encoder.mid_block.attentions.0.to_q.weight", e.Message);
        // Outside .attentions.N. the old words are left alone (a resnet never has them, so strict loading reports it).
        var other = AutoencoderKL.NormalizeKeys(new Dictionary<string, Tensor> { ["encoder.query.weight"] = zeros(1) });
        Assert.Equal(["encoder.query.weight"], other.Keys);
    }

    [Fact]
    public void FromFolder_MissingConfigJson_NamesTheFile()
    {
        string folder = Directory.CreateTempSubdirectory("vae-empty-").FullName;
        try
        {
            var e = Assert.Throws<FileNotFoundException>(() => AutoencoderKL.FromFolder(folder));
            Assert.Contains(Path.Combine(folder, "config.json"), e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void FromFolder_MalformedConfigJson_NamesTheFile()
    {
        string folder = Directory.CreateTempSubdirectory("vae-badjson-").FullName;
        try
        {
            File.WriteAllText(Path.Combine(folder, "config.json"), "{\"block_out_channels\": [32, ");
            var e = Assert.Throws<InvalidDataException>(() => AutoencoderKL.FromFolder(folder));
            Assert.Contains(Path.Combine(folder, "config.json"), e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void FromFolder_MissingWeights_NamesTheFiles()
    {
        string folder = Directory.CreateTempSubdirectory("vae-noweights-").FullName;
        try
        {
            File.Copy(Path.Combine(TinyFolder, "config.json"), Path.Combine(folder, "config.json"));
            var e = Assert.Throws<FileNotFoundException>(() => AutoencoderKL.FromFolder(folder));
            Assert.Contains(AutoencoderKL.SafetensorsFileName, e.Message);
            Assert.Contains(AutoencoderKL.PickleFileName, e.Message);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
