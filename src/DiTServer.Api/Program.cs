using DiTServer.Api.Admin;
using DiTServer.Api.Cli;
using DiTServer.Api.Endpoints;
using DiTServer.Api.Hosting;
using DiTServer.Api.Jobs;
using DiTServer.Api.Observability;
using DiTServer.Api.OpenApi;
using DiTServer.Api.Tenants;

// Verbs (sample, train, eval, bench, ...) run as a command-line tool; anything else starts the web host.
if (CommandLine.IsVerb(args))
    return await CommandLine.RunAsync(args);

var builder = WebApplication.CreateBuilder(new WebApplicationOptions
{
    Args = args,
    // The playground ships beside the binaries (build and publish output), so it is found whatever folder the
    // process starts in (`dotnet run` keeps the caller's folder so that relative model paths mean what was typed).
    WebRootPath = Path.Combine(AppContext.BaseDirectory, "wwwroot"),
});
builder.AddServerLogging();
builder.AddWireJson(); // snake_case field names everywhere (results, OpenAPI)
builder.AddOpenAIErrorDialect(); // before AddServerObservability's AddProblemDetails: asked first
builder.AddServerObservability();
builder.AddServerOpenApi();
builder.AddClientFaults();
builder.AddTenants();
builder.AddDiTServing();
builder.AddJobs();
builder.AddAdminTraining();
builder.AddPublicUrls();

var app = builder.Build();
if (app.PrepareServing() is { } failure)
{
    app.Logger.LogCritical("Cannot start: {Reason}", failure);
    await app.DisposeAsync(); // flushes the log
    return 1;
}
app.UseForwardedHeadersWhenConfigured(); // first: everything after sees the client's scheme, host and address
app.UseServerPipeline();
app.UseServerOpenApi();
app.UseDefaultFiles(); // the playground: wwwroot/index.html at /
app.UseStaticFiles();
app.MapServerProbes();
app.MapModelsApi();
app.MapImagesApi();
app.MapOpenAIImagesApi();
app.MapOpenAIImageEditsApi();
app.MapKServeApi();
app.MapJobsApi();
app.MapAdminTrainingApi();
await app.RunAsync();
return 0;

/// <summary>Exposed for WebApplicationFactory in tests.</summary>
public partial class Program;
