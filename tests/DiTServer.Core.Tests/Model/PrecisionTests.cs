using DiTServer.Core.Pipeline;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using static TorchSharp.torch;

namespace DiTServer.Core.Tests;

/// <summary>fp32 / tf32 / bf16: parsing, the device rule, and a bf16 DiT that keeps float32 at its edges.</summary>
public class PrecisionTests
{
    [Theory]
    [InlineData("fp32", Precision.Float32)]
    [InlineData("float32", Precision.Float32)]
    [InlineData("TF32", Precision.TF32)]
    [InlineData(" bf16 ", Precision.BFloat16)]
    [InlineData("bfloat16", Precision.BFloat16)]
    public void Parses_the_spellings(string text, Precision expected)
    {
        Assert.True(PrecisionExtensions.TryParse(text, out var p));
        Assert.Equal(expected, p);
    }

    [Theory]
    [InlineData("fp16")]
    [InlineData("")]
    [InlineData(null)]
    public void Rejects_others(string? text) => Assert.False(PrecisionExtensions.TryParse(text, out _));

    [Fact]
    public void Tf32_needs_cuda_and_the_model_loader_says_so()
    {
        Assert.NotNull(Precision.TF32.Unsupported(CPU));
        Assert.Null(Precision.BFloat16.Unsupported(CPU));
        Assert.Null(Precision.Float32.Unsupported(CPU));
        var e = Assert.Throws<ArgumentException>(() => LoadedModel.Load(Fixtures.PathOf("dit-tiny"), CPU, Precision.TF32));
        Assert.Contains("CUDA", e.Message);
    }

    [Fact]
    public void Bf16_model_takes_and_returns_float32_and_stays_close_to_fp32()
    {
        using var reference = DiTParityTests.LoadTiny("dit-tiny/model.pt");
        using var cast = DiTParityTests.LoadTiny("dit-tiny/model.pt");
        Precision.BFloat16.Apply(cast);
        Assert.Equal(ScalarType.BFloat16, cast.parameters().First().dtype);

        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var generator = new Generator(0);
        var x = randn(new long[] { 3, 4, 8, 8 }, generator: generator);
        var t = tensor(new long[] { 0, 500, 999 });
        var y = tensor(new long[] { 1, 7, 10 }); // 10 = the null class
        var expected = reference.forward(x, t, y);
        var got = cast.forward(x, t, y);

        Assert.Equal(ScalarType.Float32, got.dtype);
        double scale = expected.abs().max().item<float>();
        double maxDiff = (got - expected).abs().max().item<float>();
        Assert.True(maxDiff > 0, "a bf16 forward equal to fp32 to the bit did not run in bf16");
        Assert.True(maxDiff < 0.05 * scale, $"bf16 max |Δ| {maxDiff} vs max |ref| {scale}");
    }
}
