using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Api.Cli;

/// <summary>Parses "cpu" / "cuda" / "cuda:1" and checks that the device exists in this build.</summary>
public static class DeviceOption
{
    public static Device Parse(string value)
    {
        if (!DeviceName.TryParse(value, out var type, out int index)) throw new UsageException($"unknown device '{value}'; use {DeviceName.Expected}");
        if (type == DeviceType.CPU) return CPU;
        if (!cuda.is_available())
            throw new UsageException($"device '{value}' asked for, but CUDA is not available (this build uses the CPU libtorch; build with " +
                $"-p:TorchBackend=cuda on a GPU host)");
        if (index >= cuda.device_count()) throw new UsageException($"device '{value}': only {cuda.device_count()} CUDA device(s)");
        return new Device(DeviceType.CUDA, index);
    }

    /// <summary>fp32 | tf32 | bf16, checked against the device (tf32 is CUDA only).</summary>
    public static Precision ParsePrecision(string value, Device device)
    {
        if (!PrecisionExtensions.TryParse(value, out var precision)) throw new UsageException($"unknown precision '{value}'; use fp32, tf32 or bf16");
        if (precision.Unsupported(device) is { } why) throw new UsageException(why);
        return precision;
    }

    public static void ApplyThreads(int? threads)
    {
        if (threads is null) return;
        if (threads < 1) throw new UsageException("--threads must be at least 1");
        set_num_threads(threads.Value);
    }
}
