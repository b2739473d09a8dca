using System.Text.Json;
using FluentValidation;

namespace DiTServer.Api.Jobs;

/// <summary>Reads the body of <c>POST /v1/jobs</c>, a <see cref="JobRequest"/>: the body of <c>POST /v1/images</c> plus
/// the jobs-only field <c>preview_every</c> (0 or absent: no previews; k in 1..steps: a <c>preview</c> event after every
/// k-th step but the last). Only jobs take it: <c>/v1/images</c> answers once, when the images are done, so it has
/// nowhere to send previews.</summary>
public static class JobRequestParser
{
    public sealed record Request(GenerationParameters Parameters, int PreviewEvery);

    /// <param name="previewsUnsupported">Why the served model cannot make previews, or null when it can.</param>
    /// <returns>The request, or null with <paramref name="errors"/> keyed by field.</returns>
    public static Request? Parse(ReadOnlyMemory<byte> body, ImageRequestParser.Limits limits, string? previewsUnsupported,
        out Dictionary<string, string[]> errors)
    {
        errors = new Dictionary<string, string[]>();
        if (JsonContract<JobRequest>.Read(body, ImageRequestParser.Wording, errors, out var fields) is not { } request) return null;
        JobRequestValidator.For(limits, previewsUnsupported).Validate(request, fields).AddTo(errors);
        if (errors.Count > 0 || ImageRequestParser.ToParameters(request, limits, errors) is not { } parameters) return null;
        return new Request(parameters, request.PreviewEvery ?? 0);
    }
}

/// <summary>The rules of <see cref="JobRequest"/>: those of the images body, then <c>preview_every</c>, which is 0 or
/// 1..steps, the job's steps as far as the rest of the body is valid (while it is not, up to 1000 and worded "1..steps").</summary>
public sealed class JobRequestValidator : BodyValidator<JobRequest>
{
    private const string Name = "preview_every", StepsKey = "job-steps";

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<(ImageRequestParser.Limits, string?), JobRequestValidator> Built = new();

    /// <summary>The validator for a model's limits and preview support, built once.</summary>
    public static JobRequestValidator For(ImageRequestParser.Limits limits, string? previewsUnsupported) =>
        Shared(Built, (limits, previewsUnsupported), key => new JobRequestValidator(key.Item1, key.Item2));

    public JobRequestValidator(ImageRequestParser.Limits limits, string? previewsUnsupported)
    {
        var images = ImageRequestValidator.For(limits);
        Include(images);
        Field(x => x.PreviewEvery, (x, v, c) => v.ValueKind == JsonValueKind.Number && v.TryGetInt64(out var big)
                ? $"{Name} must be 0 (no previews) or in {Range(x, c, images)}, got {big}"
                : $"{Name} must be an integer: 0 for no previews, or {Range(x, c, images)}, not {v.GetRawText()}")
            .Must((x, every, c) => every is null || (every >= 0 && every <= (Steps(x, c, images) ?? ImageRequestParser.MaxSteps)))
            .WithExactMessage((x, every, c) => $"{Name} must be 0 (no previews) or in {Range(x, c, images)}, got {every}")
            .Must((x, every, c) => !(every > 0 && every <= (Steps(x, c, images) ?? ImageRequestParser.MaxSteps) && previewsUnsupported is not null))
            .WithExactMessage((_, _) => $"{Name}: {previewsUnsupported}")
            .When((_, c) => !Fields(c).Repeated(Name)); // a repeated preview_every is told so, and no more
    }

    private static string Range(JobRequest x, ValidationContext<JobRequest> c, ImageRequestValidator images) =>
        Steps(x, c, images) is { } steps ? $"1..{steps} (the job's steps)" : "1..steps";

    /// <summary>The job's steps (an edit's: those it runs, ceil(strength · steps)), or null while the rest of the body has
    /// a mistake (as the images rules see it).</summary>
    private static int? Steps(JobRequest x, ValidationContext<JobRequest> c, ImageRequestValidator images)
    {
        if (c.RootContextData.TryGetValue(StepsKey, out var known)) return (int?)known;
        int? steps = !Fields(c).FailedBesides(Name) && images.Validate(x, Fields(c)).IsValid
            ? ImageRequestValidator.StepsRunOf(x, images.Defaults) : null;
        c.RootContextData[StepsKey] = steps;
        return steps;
    }
}
