using System.Text.RegularExpressions;
using DiTServer.Core.Model;
using TorchSharp;
using static TorchSharp.torch;

namespace DiTServer.Api.Cli;

/// <summary>Parses "cpu" / "cuda" / "cuda:1" and checks that the device exists in this build.</summary>
public static partial class DeviceOption
{
    public static Device Parse(string value)
    {
        var m = DevicePattern().Match(value.Trim().ToLowerInvariant());
        if (!m.Success) throw new UsageException($"unknown device '{value}'; use cpu or cuda[:index]");
        if (m.Groups[1].Value == "cpu") return CPU;
        if (!cuda.is_available())
            throw new UsageException($"device '{value}' asked for, but CUDA is not available (this build uses the CPU libtorch; build with -p:TorchBackend=cuda on a GPU host)");
        int index = m.Groups[2].Success ? int.Parse(m.Groups[2].Value) : 0;
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

    [GeneratedRegex(@"^(cpu|cuda)(?::(\d+))?$")]
    private static partial Regex DevicePattern();
}
