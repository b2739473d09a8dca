namespace DiTServer.Api.Generation;

/// <summary>Reads the <c>POST /v1/images</c> body (also the body of <c>POST /v1/jobs</c>): 415 for a non-JSON
/// content type, 413 for a body over
/// <see cref="ServingOptions.BodyLimitFor"/> (<see cref="RequestBody"/>), 400 for any invalid field.</summary>
public static class ImageBody
{
    public sealed record Parsed(GenerationParameters? Parameters, ValidationProblem? Invalid, ProblemHttpResult? Unsupported);

    public static ImageRequestParser.Limits LimitsOf(LoadedModel model, ServingOptions o) =>
        new(model.Classes, model.Config.NumClasses, model.Config.ClassDropoutProb > 0, o.MaxImagesPerRequest, IsLatent: model.Vae is not null,
            ImageSize: model.ImageSize, ImageChannels: model.ImageChannels, GuidanceInModel: model.Config.GuidanceConditioned,
            Defaults: model.Defaults, DefaultCache: model.Manifest.DefaultCache);

    public static async Task<Parsed> ReadAsync(HttpRequest request, LoadedModel model, ServingOptions o,
        Func<ReadOnlyMemory<byte>, ImageRequestParser.Limits, (GenerationParameters?, Dictionary<string, string[]>)>? parse = null)
    {
        if (request.ContentType is { } contentType && !ImageResults.IsJson(contentType))
            return new(null, null, TypedResults.Problem(detail: $"send the body as application/json, not {contentType}",
                statusCode: StatusCodes.Status415UnsupportedMediaType, title: "Unsupported media type"));
        var body = await RequestBody.ReadAsync(request, o.BodyLimitFor(model.ImageSize)); // too large, too slow, malformed: thrown, answered by ClientFaults
        var limits = LimitsOf(model, o);
        var (parameters, errors) = parse is null
            ? (ImageRequestParser.Parse(body, limits, out var e), e)
            : parse(body, limits);
        return parameters is null ? new(null, Invalid(errors), null) : new(parameters, null, null);
    }

    public static ValidationProblem Invalid(Dictionary<string, string[]> errors) =>
        TypedResults.ValidationProblem(errors, detail: string.Join("; ", errors.Values.SelectMany(v => v)), title: "Invalid request");
}
