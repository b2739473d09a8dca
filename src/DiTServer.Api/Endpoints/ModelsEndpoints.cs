using DiTServer.Core.Model;
using System.Text.Json.Serialization;
using DiTServer.Core.Sampling;

namespace DiTServer.Api.Endpoints;

/// <summary><c>GET /v1/models</c> (the loaded model and the request limits) and <c>GET /v1/classes</c> (index → names).</summary>
public static class ModelsEndpoints
{
    public static WebApplication MapModelsApi(this WebApplication app)
    {
        var group = app.MapGroup("/v1").WithTags("Models");
        group.MapGet("/models", GetModels).WithName("GetModels").WithSummary("The loaded model, its samplers and the request limits");
        group.MapGet("/models/{id}", GetModel).WithName("GetModel").WithOpenAIErrors()
            .WithSummary("OpenAI's model object for the loaded model (what the OpenAI SDKs' models.retrieve reads); 404 in OpenAI's error shape for any " +
                "other id")
            .Produces<OpenAIModel>();
        group.MapGet("/classes", GetClasses).WithName("GetClasses").WithSummary("The model's classes: index, display name and aliases");
        return app;
    }

    /// <summary>What a request that names no sampler and no steps gets on this server: <c>default_sampler</c> of
    /// <c>GET /v1/models</c> and that sampler's <c>default_steps</c>. The playground reads them from /v1/models, and
    /// Swagger's examples and field descriptions from here (the ServedDefaultsSchemaFilter of the OpenAPI document), so none
    /// of them writes a default of its own.</summary>
    public static (string Sampler, int Steps) ServedDefault => (SamplerDefaults.Sampler.Name(), SamplerDefaults.Steps(SamplerDefaults.Sampler));

    private static Ok<ModelsResponse> GetModels(LoadedModel model, Hosting.ServedModels served, IOptions<ServingOptions> serving,
        IOptions<Jobs.JobOptions> jobs)
    {
        var o = serving.Value;
        var previews = PreviewRenderer.Unsupported(model) is null ? new PreviewInfo(jobs.Value.PreviewMaxSize) : null;
        var info = new ModelInfo(model.Name, model.Manifest.ArchitectureName, model.ImageSize, model.ImageChannels, model.Config.NumClasses,
            model.Config.ClassDropoutProb > 0, model.Device.ToString(), model.Precision.ToOptionValue(), previews,
            model.Defaults?.Sampler.Name() ?? ServedDefault.Sampler, CacheDefaultInfo.Of(model.Manifest.DefaultCache),
            SamplerInfo.All(model.Vae is null, model.Defaults), ["official", "all"],
            new RequestLimits(o.MaxImagesPerRequest, ImageRequestParser.MaxSteps, 1, ImageRequestParser.MaxCfgScale, o.BodyLimitFor(model.ImageSize)),
            new BatchingInfo(o.Batching.ToString().ToLowerInvariant(), o.MaxBatchRows, o.QueueCapacity), served.Labels,
            model.Defaults?.CfgScale ?? 4.0, model.Config.GuidanceConditioned, model.Manifest.DistilledFrom);
        return TypedResults.Ok(new ModelsResponse([info], [OpenAIModel.Of(model)]));
    }

    private static Results<Ok<OpenAIModel>, ProblemHttpResult> GetModel(string id, LoadedModel model) =>
        id == model.Name
            ? TypedResults.Ok(OpenAIModel.Of(model))
            : TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Model not found",
                detail: $"The model '{id}' does not exist; this server serves '{model.Name}' (see GET /v1/models)",
                extensions: new Dictionary<string, object?> { ["param"] = "model", ["code"] = "model_not_found" });

    private static Ok<ClassesResponse> GetClasses(LoadedModel model) =>
        TypedResults.Ok(new ClassesResponse(model.Name, model.Classes.Count,
            Enumerable.Range(0, model.Classes.Count).Select(i => new ClassInfo(i, model.Classes[i], model.Classes.Aliases(i))).ToList()));
}

/// <summary>Our fields (<c>models</c>) and OpenAI's list shape (<c>object</c>, <c>data</c>) in one answer, so the
/// OpenAI SDKs' <c>models.list()</c> and our own clients read the same document without negotiation.</summary>
public sealed record ModelsResponse(
    IReadOnlyList<ModelInfo> Models,
    IReadOnlyList<OpenAIModel> Data)
{
    public string Object => "list";
}

/// <summary>OpenAI's model object. <c>created</c> is the weights file's time (Unix seconds), 0 for a model made in memory.</summary>
public sealed record OpenAIModel(
    string Id,
    long Created,
    string OwnedBy)
{
    public string Object => "model";

    public static OpenAIModel Of(LoadedModel model) =>
        new(model.Name,
            File.Exists(model.Manifest.WeightsPath) ? new DateTimeOffset(File.GetLastWriteTimeUtc(model.Manifest.WeightsPath)).ToUnixTimeSeconds() : 0,
            "ditserver");
}

public sealed record ModelInfo(
    string Name,
    string Architecture,
    int ImageSize,
    int ImageChannels,
    int NumClasses,
    bool SupportsGuidance,
    string Device,
    string Precision,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] PreviewInfo? Previews,
    string DefaultSampler,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] CacheDefaultInfo? DefaultCache,
    IReadOnlyList<SamplerInfo> Samplers,
    IReadOnlyList<string> GuidanceModes,
    RequestLimits Limits,
    BatchingInfo Batching,
    // One engine per entry, all sharing one queue (DiT:Devices); labels as in the metrics' device label.
    IReadOnlyList<string> Devices,
    // What a request without cfg_scale gets; true when the guidance scale is a model input (a distilled student: one
    // forward row per image), and then the teacher it was distilled from.
    double DefaultCfgScale,
    bool GuidanceConditioned,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? DistilledFrom);

/// <summary>The model's feature-caching default (model.json <c>default_cache</c>): a request with one of
/// <paramref name="Samplers"/> and at least <paramref name="MinSteps"/> steps that sends no <c>cache_interval</c> gets
/// <paramref name="Interval"/> and, without a <c>cache_mode</c>, <paramref name="Mode"/>. Absent when the model declares none.</summary>
public sealed record CacheDefaultInfo(int Interval, string Mode, int MinSteps, IReadOnlyList<string> Samplers)
{
    public static CacheDefaultInfo? Of(CacheDefault? d) =>
        d is null ? null : new(d.Interval, d.Mode.Name(), d.MinSteps, CacheDefault.Samplers.Select(s => s.Name()).ToList());
}

/// <summary>One sampler and its options, as a client (the playground, a script) needs them to build a request.</summary>
/// <param name="Name">The <c>sampler</c> value.</param>
/// <param name="DefaultSteps">Steps when the request gives none.</param>
/// <param name="Orders">Allowed <c>order</c> values; one value = fixed by the name (then <c>order</c> must not be sent).</param>
/// <param name="Spacings">Allowed <c>spacing</c> values (ODE solvers only; empty = not applicable).</param>
/// <param name="Variants">Allowed <c>unipc_variant</c> values (unipc only).</param>
/// <param name="Thresholding">Whether <c>thresholding: true</c> is accepted with this sampler on this model.</param>
public sealed record SamplerInfo(
    string Name,
    string Description,
    int DefaultSteps,
    int MinSteps,
    bool Deterministic,
    IReadOnlyList<int> Orders,
    int DefaultOrder,
    bool OrderSettable,
    IReadOnlyList<string> Spacings,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? DefaultSpacing,
    IReadOnlyList<string> Variants,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? DefaultVariant,
    bool Eta,
    bool Thresholding)
{
    /// <param name="defaults">The served model's own defaults (a distilled student's): its sampler's entry shows its steps,
    /// order and spacing; null = the server's.</param>
    public static IReadOnlyList<SamplerInfo> All(bool pixelSpace, SamplingOptions? defaults = null)
    {
        var all = Server(pixelSpace);
        if (defaults is null) return all;
        return all.Select(s => s.Name != defaults.Sampler.Name() ? s : s with
        {
            DefaultSteps = defaults.Steps, DefaultOrder = defaults.EffectiveOrder,
            DefaultSpacing = defaults.IsSolver ? defaults.EffectiveSpacing.Name() : s.DefaultSpacing,
        }).ToList();
    }

    private static IReadOnlyList<SamplerInfo> Server(bool pixelSpace)
    {
        var spacings = SamplerNames.Spacings.Keys.ToList();
        var variants = SamplerNames.Variants.Keys.ToList();
        string defaultSpacing = new SamplingOptions().EffectiveSpacing.Name();
        return
        [
            new("ddpm", "Ancestral DDPM sampling (the DiT paper's 250 steps, official respacing)", SamplerDefaults.Steps(SamplerKind.Ddpm), 1, false,
                [1], 1, false, [], null, [], null, false, false),
            new("ddim", "DDIM; deterministic with eta 0", SamplerDefaults.Steps(SamplerKind.Ddim), 1, true, [1], 1, false, [], null, [], null, true, false),
            new("dpmpp_2m", "DPM-Solver++ multistep, order 2 (\"DPM++ 2M\"); order 1 is DDIM on the solver's grid",
                SamplerDefaults.Steps(SamplerKind.DpmPP2M), 1, true, [1, 2], 2, true, spacings, defaultSpacing, [], null, false, pixelSpace),
            new("dpmpp_3m", "DPM-Solver++ multistep, order 3", SamplerDefaults.Steps(SamplerKind.DpmPP3M), 3, true,
                [3], 3, false, spacings, defaultSpacing, [], null, false, pixelSpace),
            new("unipc", "UniPC predictor-corrector, data prediction", SamplerDefaults.Steps(SamplerKind.UniPc), 1, true,
                [1, 2, 3], new SamplingOptions { Sampler = SamplerKind.UniPc }.EffectiveOrder, true, spacings, defaultSpacing,
                variants, new SamplingOptions().EffectiveUniPcVariant.Name(), false, pixelSpace),
        ];
    }
}

public sealed record RequestLimits(
    int MaxImagesPerRequest,
    int MaxSteps,
    double MinCfgScale,
    double MaxCfgScale,
    int MaxBodyBytes);

/// <summary>Present when jobs may ask for step previews (<c>preview_every</c>); absent for models that cannot make them.</summary>
public sealed record PreviewInfo(int MaxSize);

public sealed record BatchingInfo(
    string Mode,
    int MaxBatchRows,
    int QueueCapacity);

public sealed record ClassesResponse(
    string Model,
    int Count,
    IReadOnlyList<ClassInfo> Classes);

public sealed record ClassInfo(
    int Index,
    string Name,
    IReadOnlyList<string> Aliases);
