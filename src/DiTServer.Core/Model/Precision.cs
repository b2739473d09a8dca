using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Core.Model;

/// <summary>How the DiT's arithmetic runs. The sampler's own math (schedules, posterior, guidance mix) stays
/// float32 in every mode, as in the official code; only the network's matmuls change.</summary>
public enum Precision
{
    /// <summary>IEEE float32 everywhere: the parity reference.</summary>
    Float32,
    /// <summary>float32 tensors, matmuls and convolutions on the GPU's TF32 tensor cores (10-bit mantissa inputs, float32 accumulation).</summary>
    TF32,
    /// <summary>DiT weights and activations in bfloat16 (float32 accumulation inside the kernels); its inputs and outputs
    /// stay float32. The VAE stays float32 with TF32 matmuls: in plain fp32 its decode took 7x longer than the whole
    /// bf16 sampling loop's share per image on an H200 (1962 vs 276 ms for 64 images at 256 px).</summary>
    BFloat16,
}

public static class PrecisionExtensions
{
    /// <summary>fp32 | tf32 | bf16 (and their long spellings).</summary>
    public static bool TryParse(string? value, out Precision precision)
    {
        switch (value?.Trim().ToLowerInvariant())
        {
            case "fp32" or "float32": precision = Precision.Float32; return true;
            case "tf32": precision = Precision.TF32; return true;
            case "bf16" or "bfloat16": precision = Precision.BFloat16; return true;
            default: precision = Precision.Float32; return false;
        }
    }

    public static string ToOptionValue(this Precision precision) => precision switch
    {
        Precision.TF32 => "tf32",
        Precision.BFloat16 => "bf16",
        _ => "fp32",
    };

    /// <summary>Why <paramref name="precision"/> cannot run on <paramref name="device"/>, or null when it can.</summary>
    /// <remarks>TF32 is a tensor-core format: on the CPU the switch does nothing, so asking for it there is a mistake
    /// worth reporting. bfloat16 runs on the CPU but without AMX it is slower than float32.</remarks>
    public static string? Unsupported(this Precision precision, Device device) =>
        precision == Precision.TF32 && device.type != DeviceType.CUDA ? "tf32 needs a CUDA device (on the CPU it would silently be fp32)" : null;

    /// <summary>Sets the process-wide TF32 switches and casts the model's weights. TF32 is global in libtorch
    /// (cuBLAS and cuDNN flags), so one process serves one precision; the VAE shares the TF32 setting.</summary>
    public static void Apply(this Precision precision, DiT model)
    {
        precision.SetTensorCoreSwitches();
        if (precision == Precision.BFloat16) model.to(bfloat16);
    }

    /// <summary>The process-wide cuBLAS/cuDNN TF32 switches alone: on for tf32 and bf16 (whose float32 parts, the VAE,
    /// then use TF32 too), off for fp32.</summary>
    public static void SetTensorCoreSwitches(this Precision precision)
    {
        bool tf32 = precision != Precision.Float32;
        torch.backends.cuda.matmul.allow_tf32 = tf32;
        torch.backends.cudnn.allow_tf32 = tf32;
    }
}
