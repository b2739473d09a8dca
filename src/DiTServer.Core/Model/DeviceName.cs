using System.Text.RegularExpressions;
using TorchSharp;

namespace DiTServer.Core.Model;

/// <summary>The one spelling of a device everywhere (CLI options, <c>DiT:Device</c>, <c>DiT:Devices</c>): <c>cpu</c>,
/// <c>cuda</c> or <c>cuda:INDEX</c>, case and surrounding spaces ignored. Whether the device exists is checked when
/// it is used (<c>DeviceOption.Parse</c>), not here.</summary>
public static partial class DeviceName
{
    public const string Expected = "cpu or cuda[:index]";

    public static bool TryParse(string? text, out DeviceType type, out int index)
    {
        type = DeviceType.CPU;
        index = 0;
        var m = Pattern().Match((text ?? "").Trim().ToLowerInvariant());
        if (!m.Success) return false;
        if (m.Groups[1].Value == "cuda")
        {
            type = DeviceType.CUDA;
            if (m.Groups[2].Success && !int.TryParse(m.Groups[2].Value, out index)) return false;
        }
        return true;
    }

    [GeneratedRegex(@"^(cpu|cuda)(?::(\d{1,4}))?$")]
    private static partial Regex Pattern();
}
