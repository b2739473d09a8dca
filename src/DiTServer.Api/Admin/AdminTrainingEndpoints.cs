using System.Text.Json;
using DiTServer.Api.OpenApi;

namespace DiTServer.Api.Admin;

/// <summary>The admin-only training API under <c>/v1/admin/training/jobs</c>; mapped only when an admin key is configured.</summary>
public static class AdminTrainingEndpoints
{
    public static WebApplicationBuilder AddAdminTraining(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<AdminOptions>().BindConfiguration(AdminOptions.Section)
            .Validate(o => { _ = AdminKey.FromConfiguredHash(o.ApiKeySha256); return true; }).ValidateOnStart();
        builder.Services.AddOptions<TrainingApiOptions>().BindConfiguration(TrainingApiOptions.Section)
            .Validate(o => !string.IsNullOrWhiteSpace(o.DataRoot) && !string.IsNullOrWhiteSpace(o.OutputRoot),
                "Training:DataRoot and Training:OutputRoot must be set")
            .Validate(o => o.ActivationTimeout > TimeSpan.Zero, "Training:ActivationTimeout must be positive")
            .Validate(o => o.MaxParameters > 0 && o.MaxMemoryBytes > 0, "Training:MaxParameters and Training:MaxMemoryBytes must be positive")
            .Validate(o => o.MaxBodyBytes > 0, "Training:MaxBodyBytes must be positive")
            .Validate(o => o.MaxImagePixels > 0, "Training:MaxImagePixels must be positive")
            .Validate(o => o.DatasetScanTimeout > TimeSpan.Zero, "Training:DatasetScanTimeout must be positive")
            .ValidateOnStart();
        builder.Services.AddAuthentication().AddScheme<Microsoft.AspNetCore.Authentication.AuthenticationSchemeOptions, AdminKeyAuthentication>(
            AdminKeyAuthentication.SchemeName, null);
        builder.Services.AddAuthorizationBuilder().AddPolicy(AdminKeyAuthentication.Policy, policy =>
            policy.AddAuthenticationSchemes(AdminKeyAuthentication.SchemeName).RequireAuthenticatedUser());
        builder.Services.AddSingleton<TrainingJobs>();
        // Stopped by the host like the generation worker: shutdown cancels a running job and awaits its thread.
        builder.Services.AddHostedService(sp => sp.GetRequiredService<TrainingJobs>());
        return builder;
    }

    public static WebApplication MapAdminTrainingApi(this WebApplication app)
    {
        AdminKey? key;
        try { key = AdminKey.FromConfiguredHash(app.Services.GetRequiredService<IOptions<AdminOptions>>().Value.ApiKeySha256); }
        catch (ArgumentException) { key = null; } // reported by options validation at start
        if (key is null)
        {
            app.Logger.LogInformation("Admin training API disabled: set Admin:ApiKeySha256 to enable /v1/admin/training");
            return app;
        }
        var jobs = app.Services.GetRequiredService<TrainingJobs>();
        Directory.CreateDirectory(jobs.OutputRoot);
        int recovered = jobs.Recover(); // runs of earlier processes: listed with their last checkpoint step, resumable
        app.Logger.LogInformation("Admin training API enabled; datasets under {DataRoot}, runs under {OutputRoot} ({Runs} found there)",
            jobs.DataRoot, jobs.OutputRoot, recovered);

        var group = app.MapGroup("/v1/admin/training/jobs").WithTags("Admin training")
            .RequireAuthorization(AdminKeyAuthentication.Policy)
            .ProducesProblem(StatusCodes.Status401Unauthorized)
            .WithMetadata(new AdminBearer());
        group.MapPost("/", Create).WithName("CreateTrainingJob").WithSummary("Start a training or fine-tuning job (one per device)")
            .WithJsonBody<TrainingJobRequest>(TrainingJobRequest.Example,
                "The dataset and run folders (relative to Training:DataRoot and OutputRoot), the model and the schedule.")
            .ProducesValidationProblem().ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status408RequestTimeout)
            .ProducesProblem(StatusCodes.Status413PayloadTooLarge).ProducesProblem(StatusCodes.Status415UnsupportedMediaType);
        group.MapGet("/", (TrainingJobs all) => TypedResults.Ok(all.List())).WithName("ListTrainingJobs")
            .WithSummary("All training jobs: this process's, and the runs found under Training:OutputRoot at start (Interrupted ones can be resumed)");
        group.MapGet("/{id}", Get).WithName("GetTrainingJob").WithSummary("State, step, loss, it/s, ETA and last checkpoint of a job");
        group.MapDelete("/{id}", Cancel).WithName("CancelTrainingJob").WithSummary("Cancel a job; its last checkpoint is kept");
        group.MapPost("/{id}/activate", Activate).WithName("ActivateTrainingJob")
            .WithSummary("Serve the job's latest EMA weights (same architecture), without failing running requests")
            .WithDescription("409 when there is no checkpoint or the architecture differs, 422 when the checkpoint cannot be loaded; either way the previous " +
                "weights keep serving.")
            .ProducesProblem(StatusCodes.Status409Conflict).ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status503ServiceUnavailable);
        group.MapPost("/{id}/resume", Resume).WithName("ResumeTrainingJob")
            .WithJsonBody<ResumeRequest>("""{"steps": 2000}""", "Optional: a new total step count (absent or an empty body: the run's own).", required: false)
            .WithSummary("Continue a stopped run (Interrupted by a restart, Cancelled, or Failed after a checkpoint) from its checkpoint")
            .WithDescription("Optional body {\"steps\": N} raises the total step count. Same weights, optimizer, RNG and options as the run had; 409 while a " +
                "job runs or when the run is already at its step count, 422 when its checkpoint or dataset cannot be used.")
            .ProducesValidationProblem().ProducesProblem(StatusCodes.Status404NotFound).ProducesProblem(StatusCodes.Status409Conflict)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity);
        return app;
    }

    private static async Task<Results<Accepted<TrainingJobStatus>, ValidationProblem, ProblemHttpResult>> Create(HttpRequest http, TrainingJobs jobs,
        IOptions<TrainingApiOptions> options)
    {
        if (!(http.ContentType ?? "").StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            return TypedResults.Problem(statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type",
                detail: "send the job as application/json");
        var body = await RequestBody.ReadAsync(http, options.Value.MaxBodyBytes);
        var errors = new Dictionary<string, string[]>();
        // Every field is checked here, before a job exists (TrainingJobRequestValidator); only what needs the files is left to Start.
        var read = JsonContract<TrainingJobRequest>.Read(body, Wording, errors, out var fields);
        if (read is not null) TrainingJobRequestValidator.Instance.Validate(read, fields).AddTo(errors);
        if (errors.Count > 0 || read is null)
            return TypedResults.ValidationProblem(errors, detail: string.Join("; ", errors.SelectMany(e => e.Value)), title: "Invalid training job");
        var request = read;
        try
        {
            var job = jobs.Start(request);
            return TypedResults.Accepted($"/v1/admin/training/jobs/{job.Id}", job.Status);
        }
        catch (ArgumentException e) { return Invalid(e.Message); }
        catch (InvalidOperationException e)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "A training job is running", detail: e.Message);
        }
    }

    private static Results<Ok<TrainingJobStatus>, ProblemHttpResult> Get(string id, TrainingJobs jobs) =>
        jobs.Find(id) is { } job ? TypedResults.Ok(job.Status) : NotFound(id);

    private static Results<Accepted<TrainingJobStatus>, ProblemHttpResult> Cancel(string id, TrainingJobs jobs)
    {
        if (jobs.Find(id) is not { } job) return NotFound(id);
        job.Cancel.Cancel();
        return TypedResults.Accepted($"/v1/admin/training/jobs/{id}", job.Status);
    }

    private static async Task<Results<Ok<ActivationResponse>, ProblemHttpResult>> Activate(string id, TrainingJobs jobs, CancellationToken cancel)
    {
        if (jobs.Find(id) is not { } job) return NotFound(id);
        try
        {
            long step = await jobs.ActivateAsync(job, cancel);
            return TypedResults.Ok(new ActivationResponse(id, step));
        }
        catch (InvalidOperationException e)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Cannot activate",
                detail: $"{e.Message}; the previous weights keep serving");
        }
        catch (UnusableCheckpointException e)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity, title: "Unusable checkpoint",
                detail: $"{e.Message}; the previous weights keep serving");
        }
        catch (TimeoutException)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status503ServiceUnavailable, title: "Activation timed out",
                detail: "running requests did not finish within Training:ActivationTimeout; the previous weights still serve");
        }
    }

    private static readonly BodyWording Wording = new("the body is empty; send the job as a JSON object such as " + TrainingJobRequest.Example,
        kind => $"the body must be a JSON object, not {JsonText.Describe(kind)}");

    /// <summary>A JSON body as <typeparamref name="T"/>, or the reason it is not one (null for a JSON null).</summary>
    private static (T? Value, string? Error)? ParseJson<T>(ReadOnlyMemory<byte> body, string what) where T : class
    {
        // System.Text.Json reads invalid UTF-8 inside a property name or string as far as it can and then fails with an
        // InvalidOperationException; checking first makes it one clear 400.
        if (!System.Text.Unicode.Utf8.IsValid(body.Span)) return (null, JsonContract.NotUtf8);
        try
        {
            var value = JsonSerializer.Deserialize<T>(body.Span, JsonContract.Options);
            return value is null ? null : (value, null);
        }
        catch (JsonException e) { return (null, $"malformed {what}: {e.Message}"); }
        catch (InvalidOperationException e) { return (null, $"malformed {what}: {e.Message}"); } // e.g. an escaped lone surrogate
    }

    private static async Task<Results<Accepted<TrainingJobStatus>, ValidationProblem, ProblemHttpResult>> Resume(string id, HttpRequest http,
        TrainingJobs jobs, IOptions<TrainingApiOptions> options)
    {
        if (jobs.Find(id) is not { } job) return NotFound(id);
        long? steps = null;
        var body = await RequestBody.ReadAsync(http, options.Value.MaxBodyBytes);
        if (body.Length > 0)
        {
            if (ParseJson<ResumeRequest>(body, "resume request") is { } parsed)
            {
                if (parsed.Error is { } error) return Invalid(error);
                steps = parsed.Value!.Steps;
                if (steps is < 1 or > TrainingJobRequestValidator.MaxSteps)
                    return TypedResults.ValidationProblem(new Dictionary<string, string[]>
                    {
                        ["steps"] = [$"steps must be in 1..{TrainingJobRequestValidator.MaxSteps}, got {steps}"],
                    }, detail: $"steps must be in 1..{TrainingJobRequestValidator.MaxSteps}, got {steps}", title: "Invalid resume request");
            }
        }
        try
        {
            var resumed = jobs.Resume(job, steps);
            return TypedResults.Accepted($"/v1/admin/training/jobs/{resumed.Id}", resumed.Status);
        }
        catch (ArgumentException e) { return Invalid(e.Message); }
        catch (InvalidOperationException e)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Cannot resume", detail: e.Message);
        }
        catch (UnusableCheckpointException e)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status422UnprocessableEntity, title: "Cannot resume", detail: e.Message);
        }
    }

    private static ValidationProblem Invalid(string detail) =>
        TypedResults.ValidationProblem(new Dictionary<string, string[]> { ["body"] = [detail] }, detail: detail, title: "Invalid training job");

    private static ProblemHttpResult NotFound(string id) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Unknown training job", detail: $"no training job '{id}'");
}

/// <summary>Body of <c>POST /v1/admin/training/jobs/{id}/resume</c> (optional).</summary>
public sealed record ResumeRequest
{
    /// <summary>New total step count; absent: the run's own.</summary>
    public long? Steps { get; init; }
}

public sealed record ActivationResponse(
    // says what was activated: a bare "job" beside "step" would read as the job now running
    [property: System.Text.Json.Serialization.JsonPropertyName("activated_job")] string Job,
    long Step);
