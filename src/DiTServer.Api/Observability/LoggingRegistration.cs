using Serilog;
using Serilog.Events;
using Serilog.Formatting.Compact;

namespace DiTServer.Api.Observability;

/// <summary>Serilog on the console: text by default, one JSON object per line with <c>Logs:Format=json</c>.
/// Scopes become properties, so the worker's lines for a request carry its <c>RequestId</c>.</summary>
public static class LoggingRegistration
{
    private const string TextTemplate = "[{Timestamp:HH:mm:ss} {Level:u3}] {Message:lj} {Properties:j}{NewLine}{Exception}";

    public static WebApplicationBuilder AddServerLogging(this WebApplicationBuilder builder)
    {
        bool json = string.Equals(builder.Configuration["Logs:Format"], "json", StringComparison.OrdinalIgnoreCase);
        // Native writers (libtorch's warnings) would put plain text among the JSON lines: capture them as events.
        if (json && builder.Configuration.GetValue("Logs:CaptureNativeOutput", true)) NativeOutputCapture.Start(new RenderedCompactJsonFormatter());
        // Test seam (never set in production): a real libtorch warning (TORCH_WARN, straight to fd 2) once the capture is on.
        if (Environment.GetEnvironmentVariable("DITSERVER_TEST_NATIVE_WARNING") == "1") NativeWarning();
        // preserveStaticLogger: every host (tests start several) gets its own logger; none touches Serilog's static Log.
        builder.Services.AddSerilog((services, lc) =>
        {
            lc.MinimumLevel.Information()
              .MinimumLevel.Override("Microsoft.AspNetCore", LogEventLevel.Warning)
              .MinimumLevel.Override("Microsoft.Extensions.Diagnostics.HealthChecks", LogEventLevel.Warning)
              .ReadFrom.Configuration(builder.Configuration)
              .Enrich.FromLogContext();
            if (json) lc.WriteTo.Console(new RenderedCompactJsonFormatter());
            else lc.WriteTo.Console(outputTemplate: TextTemplate, formatProvider: System.Globalization.CultureInfo.InvariantCulture);
        }, preserveStaticLogger: true);
        return builder;
    }

    /// <summary>std() of one value: libtorch warns that its degrees of freedom are ≤ 0 (ReduceOps.cpp), on stderr.</summary>
    private static void NativeWarning()
    {
        using var one = TorchSharp.torch.tensor(new[] { 1f });
        using var std = one.std();
    }

    /// <summary>One line per HTTP request (method, path, status, time) tagged with the request id.</summary>
    public static WebApplication UseServerRequestLogging(this WebApplication app)
    {
        app.UseSerilogRequestLogging(o =>
        {
            o.Logger = app.Services.GetRequiredService<Serilog.ILogger>(); // this host's logger; the static one is left alone
            o.EnrichDiagnosticContext = (diag, http) => diag.Set("RequestId", http.TraceIdentifier);
        });
        return app;
    }
}
