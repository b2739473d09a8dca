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
