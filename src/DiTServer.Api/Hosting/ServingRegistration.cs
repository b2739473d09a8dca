using DiTServer.Api.Cli;
using DiTServer.Api.Observability;
using DiTServer.Core.Model;

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

        // One model copy per served device; the first is the LoadedModel the endpoints read (names, sizes, config).
        services.AddSingleton(sp =>
        {
            var o = sp.GetRequiredService<IOptions<DiTOptions>>().Value;
            var path = Path.GetFullPath(o.Model!, sp.GetRequiredService<IHostEnvironment>().ContentRootPath);
            PrecisionExtensions.TryParse(o.Precision, out var precision); // the options validator has checked the spelling
            var devices = o.ServedDevices;
            var labels = DeviceLabels.Of(devices);
            var models = new List<ServedModel>();
            try
            {
                for (int i = 0; i < devices.Count; i++)
                    models.Add(new ServedModel(LoadedModel.Load(path, DeviceOption.Parse(devices[i]), precision), labels[i]));
            }
            catch
            {
                foreach (var m in models) m.Model.Dispose();
                throw;
            }
            return new ServedModels(models);
        });
        services.AddSingleton(sp => sp.GetRequiredService<ServedModels>().Models[0].Model);
        services.AddSingleton(sp => new Scheduler(sp.GetRequiredService<IOptions<ServingOptions>>().Value,
            sp.GetRequiredService<ServedModels>().Models.Count, sp.GetRequiredService<TimeProvider>()));
        services.AddSingleton<Generation.ClassGuesses>(); // variations' class guesses, bounded process-wide
        services.AddSingleton(sp => new ServingMetrics(sp.GetRequiredService<IOptions<DiTOptions>>().Value.ServedDevices));
        services.AddSingleton<IServingObserver>(sp => sp.GetRequiredService<ServingMetrics>());
        services.AddSingleton(sp =>
        {
            var served = sp.GetRequiredService<ServedModels>().Models;
            var metrics = sp.GetRequiredService<ServingMetrics>();
            var observer = sp.GetRequiredService<IServingObserver>(); // the metrics, or a test's wrapper around them
            var devices = served.Select(m => new GenerationEngine.Device(
                new ModelRunner(m.Model, sp.GetService<IRunnerFaultInjector>()),
                ReferenceEquals(observer, metrics) ? metrics.ForDevice(m.Label) : observer, m.Label)).ToList();
            return new GenerationEngine(devices, sp.GetRequiredService<Scheduler>(), sp.GetRequiredService<IOptions<ServingOptions>>().Value,
                sp.GetRequiredService<ILoggerFactory>().CreateLogger<GenerationEngine>());
        });
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
                _ = app.Services.GetRequiredService<IOptions<List<Tenants.TenantOptions>>>().Value;
            }
            catch (InvalidOperationException e)
            {
                return $"bad configuration: {e.Message}"; // a value that does not convert, e.g. Jobs:ResultTtl=banana
            }
            var served = app.Services.GetRequiredService<ServedModels>();
            var model = served.Models[0].Model;
            app.Logger.LogInformation("Serving {Model} ({Architecture}, {Size}px, {Classes} classes) on {Devices}, {Precision}",
                model.Name, model.Manifest.ArchitectureName, model.ImageSize, model.Config.NumClasses,
                string.Join(", ", served.Models.Select(m => m.Label)), model.Precision.ToOptionValue());
            return null;
        }
        catch (OptionsValidationException e) { return string.Join("; ", e.Failures); }
        catch (Exception e) when (e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException
            or UsageException or InvalidOperationException)
        {
            return $"could not load the model: {e.Message}";
        }
    }
}

/// <summary>The model copies of this process, one per served device, with the device's label.</summary>
public sealed record ServedModels(IReadOnlyList<ServedModel> Models) : IDisposable
{
    public IReadOnlyList<string> Labels => Models.Select(m => m.Label).ToList();

    public void Dispose()
    {
        // The first copy is also registered as LoadedModel, which the container disposes itself.
        foreach (var m in Models.Skip(1)) m.Model.Dispose();
    }
}

public sealed record ServedModel(LoadedModel Model, string Label);
