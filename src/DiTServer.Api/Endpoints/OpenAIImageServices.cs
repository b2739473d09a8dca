using DiTServer.Api.Jobs;
using DiTServer.Api.Observability;
using DiTServer.Api.Hosting;

namespace DiTServer.Api.Endpoints;

/// <summary>What the OpenAI-style image routes use to run a request and answer it.</summary>
public sealed record OpenAIImageServices(LoadedModel Model, Scheduler Scheduler, JobStore Store, IOptions<ServingOptions> Serving, TimeProvider Time,
    PublicUrls Urls, ISharedJobs Shared, GenerationMetrics Outcomes);
