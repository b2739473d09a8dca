using DiTServer.Api.Cli;
using DiTServer.Api.Observability;
using DiTServer.Core.Checkpoints;
using DiTServer.Core.Model;
using DiTServer.Core.Serving;
using Microsoft.Extensions.Options;

namespace DiTServer.Api.Hosting;

/// <summary>Composition of the serving path: options, the loaded model, the queue, the engine and its worker.</summary>
public static class ServingRegistration
{
    public static WebApplicationBuilder AddDiTServing(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<DiTOptions>().BindConfiguration(DiTOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<DiTOptionsSetup>();
        services.AddSingleton<IPostConfigureOptions<DiTOptions>>(sp => sp.GetRequiredService<DiTOptionsSetup>());
        services.AddSingleton<IValidateOptions<DiTOptions>>(sp => sp.GetRequiredService<DiTOptionsSetup>());
        services.AddOptions<ServingOptions>().BindConfiguration(ServingOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<IValidateOptions<ServingOptions>, ServingOptionsValidator>();
        services.AddOptions<Endpoints.ClientOptions>().BindConfiguration(Endpoints.ClientOptions.Section);

        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<DiTOptions>>().Value;
            var path = Path.GetFullPath(o.Model!, sp.GetRequiredService<IHostEnvironment>().ContentRootPath);
            PrecisionExtensions.TryParse(o.Precision, out var precision); // the options validator has checked the spelling
            return LoadedModel.Load(path, DeviceOption.Parse(o.Device), precision);
        });
        services.AddSingleton(sp => new GenerationQueue(sp.GetRequiredService<IOptions<ServingOptions>>().Value));
        services.AddSingleton<ServingMetrics>();
        services.AddSingleton<IServingObserver>(sp => sp.GetRequiredService<ServingMetrics>());
        services.AddSingleton(sp => new GenerationEngine(
            new ModelRunner(sp.GetRequiredService<LoadedModel>(), sp.GetService<IRunnerFaultInjector>()),
            sp.GetRequiredService<GenerationQueue>(),
            sp.GetRequiredService<IOptions<ServingOptions>>().Value,
            sp.GetRequiredService<IServingObserver>(),
            sp.GetRequiredService<ILoggerFactory>().CreateLogger<GenerationEngine>()));
        services.AddHostedService<GenerationWorker>();
        return builder;
    }

    /// <summary>Resolves the options and loads the model before the host starts, so a bad configuration ends the
    /// process with one clear line instead of the host's stack trace. Returns that line, or null when all is well.</summary>
    public static string? PrepareServing(this WebApplication app)
    {
        try
        {
            try
            {
                _ = app.Services.GetRequiredService<IOptions<ServingOptions>>().Value;
                _ = app.Services.GetRequiredService<IOptions<Jobs.JobOptions>>().Value;
            }
            catch (InvalidOperationException e)
            {
                return $"bad configuration: {e.Message}"; // a value that does not convert, e.g. Jobs:ResultTtl=banana
            }
            var model = app.Services.GetRequiredService<LoadedModel>();
            app.Logger.LogInformation("Serving {Model} ({Architecture}, {Size}px, {Classes} classes) on {Device}, {Precision}",
                model.Name, model.Manifest.ArchitectureName, model.ImageSize, model.Config.NumClasses, model.Device, model.Precision.ToOptionValue());
            return null;
        }
        catch (OptionsValidationException e) { return string.Join("; ", e.Failures); }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException or UsageException or InvalidOperationException)
        {
            return $"could not load the model: {e.Message}";
        }
    }
}
