using DiTServer.Api.Cli;

// Verbs (sample, bench) run as a command-line tool; anything else starts the web host.
if (CommandLine.IsVerb(args))
    return await CommandLine.RunAsync(args);

var builder = WebApplication.CreateBuilder(args);
var app = builder.Build();
app.MapGet("/health/live", () => Results.Ok(new { status = "live" }));
await app.RunAsync();
return 0;

/// <summary>Exposed for WebApplicationFactory in tests.</summary>
public partial class Program;
