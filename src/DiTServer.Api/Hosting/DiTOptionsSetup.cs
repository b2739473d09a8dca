using DiTServer.Core.Model;

namespace DiTServer.Api.Hosting;

/// <summary>Fills in the demo model when <c>DiT:Model</c> is unset, and checks that the model path exists.</summary>
public sealed class DiTOptionsSetup(IHostEnvironment environment) : IPostConfigureOptions<DiTOptions>, IValidateOptions<DiTOptions>
{
    public void PostConfigure(string? name, DiTOptions options)
    {
        if (!string.IsNullOrWhiteSpace(options.Model)) return;
        options.Model = new[] { AppContext.BaseDirectory, environment.ContentRootPath }
            .Select(root => Path.Combine(root, DiTOptions.DemoModelFolder))
            .FirstOrDefault(dir => File.Exists(Path.Combine(dir, "model.json")));
    }

    public ValidateOptionsResult Validate(string? name, DiTOptions options)
    {
        // The CLI's parsers, so a spelling the CLI takes is one the server takes.
        if (!DeviceName.TryParse(options.Device, out _, out _))
            return ValidateOptionsResult.Fail($"DiT:Device must be {DeviceName.Expected} (got '{options.Device}')");
        foreach (var device in options.Devices)
            if (!DeviceName.TryParse(device, out _, out _))
                return ValidateOptionsResult.Fail($"DiT:Devices holds '{device}': each must be {DeviceName.Expected}");
        if (!PrecisionExtensions.TryParse(options.Precision, out var precision))
            return ValidateOptionsResult.Fail($"DiT:Precision must be fp32, tf32 or bf16 (got '{options.Precision}')");
        if (precision == Precision.TF32 && options.ServedDevices.Any(d => DeviceName.TryParse(d, out var type, out _) && type != TorchSharp.DeviceType.CUDA))
            return ValidateOptionsResult.Fail("DiT:Precision tf32 needs DiT:Device cuda (TF32 is a GPU tensor-core format)");
        if (string.IsNullOrWhiteSpace(options.Model)) return ValidateOptionsResult.Skip; // [Required] reports it
        var path = Path.GetFullPath(options.Model, environment.ContentRootPath);
        if (!File.Exists(path) && !Directory.Exists(path))
            return ValidateOptionsResult.Fail($"DiT:Model '{options.Model}' does not exist (resolved to {path}); set DiT__Model to a model folder with " +
                $"model.json");
        return ValidateOptionsResult.Success;
    }
}
