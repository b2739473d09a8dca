using Microsoft.Extensions.Options;

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
        foreach (var device in options.Devices)
            if (!System.Text.RegularExpressions.Regex.IsMatch(device ?? "", @"^(cpu|cuda(:\d+)?)$"))
                return ValidateOptionsResult.Fail($"DiT:Devices holds '{device}': each must be cpu or cuda[:index]");
        if (options.Precision == "tf32" && options.ServedDevices.Any(d => !d.StartsWith("cuda", StringComparison.Ordinal)))
            return ValidateOptionsResult.Fail("DiT:Precision tf32 needs DiT:Device cuda (TF32 is a GPU tensor-core format)");
        if (string.IsNullOrWhiteSpace(options.Model)) return ValidateOptionsResult.Skip; // [Required] reports it
        var path = Path.GetFullPath(options.Model, environment.ContentRootPath);
        if (!File.Exists(path) && !Directory.Exists(path))
            return ValidateOptionsResult.Fail($"DiT:Model '{options.Model}' does not exist (resolved to {path}); set DiT__Model to a model folder with model.json");
        return ValidateOptionsResult.Success;
    }
}
