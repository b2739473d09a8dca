using System.ComponentModel.DataAnnotations;

namespace DiTServer.Api.Hosting;

/// <summary>Which model to serve and where (configuration section <c>DiT</c>; env <c>DiT__Model</c>, <c>DiT__Device</c>).</summary>
public sealed class DiTOptions
{
    public const string Section = "DiT";

    /// <summary>Relative to the application folder and the content root when no path is configured.</summary>
    public const string DemoModelFolder = "models/dit-fashion-mnist";

    /// <summary>A model folder with model.json, or the manifest file. Defaults to the embedded demo model when present.</summary>
    [Required(ErrorMessage = "DiT:Model is not set and the demo model (" + DemoModelFolder + ") is not in this build: set DiT__Model to a model folder with model.json")]
    public string? Model { get; set; }

    /// <summary><c>cpu</c> or <c>cuda[:index]</c>.</summary>
    [Required, RegularExpression(@"^(cpu|cuda(:\d+)?)$", ErrorMessage = "DiT:Device must be cpu or cuda[:index]")]
    public string Device { get; set; } = "cpu";

    /// <summary><c>fp32</c> (the parity reference), <c>tf32</c> (CUDA only) or <c>bf16</c>: how the DiT computes.</summary>
    [Required, RegularExpression(@"^(fp32|tf32|bf16)$", ErrorMessage = "DiT:Precision must be fp32, tf32 or bf16")]
    public string Precision { get; set; } = "fp32";
}
