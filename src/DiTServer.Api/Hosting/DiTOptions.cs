using System.ComponentModel.DataAnnotations;

namespace DiTServer.Api.Hosting;

/// <summary>Which model to serve and where (configuration section <c>DiT</c>; env <c>DiT__Model</c>, <c>DiT__Device</c>).</summary>
public sealed class DiTOptions
{
    public const string Section = "DiT";

    /// <summary>Relative to the application folder and the content root when no path is configured.</summary>
    public const string DemoModelFolder = "models/dit-fashion-mnist";

    /// <summary>A model folder with model.json, or the manifest file. Defaults to the embedded demo model when present.</summary>
    [Required(ErrorMessage = "DiT:Model is not set and the demo model (" + DemoModelFolder
        + ") is not in this build: set DiT__Model to a model folder with model.json")]
    public string? Model { get; set; }

    /// <summary><c>cpu</c> or <c>cuda[:index]</c>.</summary>
    /// <remarks>Spelling checked by <see cref="DiTOptionsSetup"/> with the CLI's parser (<see cref="Core.Model.DeviceName"/>).</remarks>
    [Required]
    public string Device { get; set; } = "cpu";

    /// <summary>Several devices in one process, e.g. <c>["cuda:0","cuda:1"]</c> (env <c>DiT__Devices__0=cuda:0</c>, …): one
    /// model copy, worker thread and engine each, all pulling from one queue. Empty: <see cref="Device"/> alone. A device
    /// may be listed twice (two engines on one GPU, or two CPU engines of a few threads each).</summary>
    public string[] Devices { get; set; } = [];

    /// <summary>The devices to serve on: <see cref="Devices"/>, or <see cref="Device"/> when that is empty.</summary>
    public IReadOnlyList<string> ServedDevices => Devices.Length > 0 ? Devices : [Device];

    /// <summary><c>fp32</c> (the parity reference), <c>tf32</c> (CUDA only) or <c>bf16</c>: how the DiT computes.</summary>
    /// <remarks>Spelling checked by <see cref="DiTOptionsSetup"/> with the CLI's parser (<see cref="Core.Model.PrecisionExtensions"/>).</remarks>
    [Required]
    public string Precision { get; set; } = "fp32";
}
