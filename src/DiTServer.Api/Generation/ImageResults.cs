using DiTServer.Core.Imaging;
using Microsoft.Net.Http.Headers;

namespace DiTServer.Api.Generation;

/// <summary>What <c>/v1/images</c>, <c>/v1/jobs/{id}/result</c> and the OpenAI facade share: content negotiation,
/// and turning finished images into the PNG (one image or a grid) or JSON answer.</summary>
public static class ImageResults
{
    /// <summary>Every image as its own PNG in JSON (<c>Accept: application/json</c>).</summary>
    /// <param name="batchSize">Images the request made (what reproduces one of them), which is more than
    /// <paramref name="images"/> when one was picked with <c>?index=</c>; default: all of them are here.</param>
    public static Ok<ImagesResponse> Json(LoadedModel model, IReadOnlyList<GeneratedImage> images, int? batchSize = null) =>
        TypedResults.Ok(new ImagesResponse(model.Name,
            images.Select(i => new ImageItem(i.Index, i.Seed, batchSize ?? images.Count, i.ClassLabel, i.ClassName, Convert.ToBase64String(i.Png))).ToList()));

    /// <summary>One PNG, or a grid of several; the same bytes for the same images on every endpoint.</summary>
    public static async Task<FileContentHttpResult> Png(LoadedModel model, GenerationParameters parameters, IReadOnlyList<GeneratedImage> images)
    {
        if (images.Count == 1) return TypedResults.File(images[0].Png, "image/png");
        var png = await Task.Run(() => Grid(model, parameters, images)); // CPU work off the request's thread, never on the worker
        return TypedResults.File(png, "image/png");
    }

    /// <summary>torchvision-style grid (4 per row, 2 px padding) with the first image's metadata, minus its batch index.</summary>
    public static byte[] Grid(LoadedModel model, GenerationParameters p, IReadOnlyList<GeneratedImage> images)
    {
        var first = images[0];
        var (hwc, w, h) = ImageGrid.Tile(images.Select(i => i.Hwc).ToList(), first.Width, first.Height, first.Channels);
        var metadata = ImagePipeline.Metadata(model, p.Labels, 0, p.Sampling, p.Edit)
            .Where(kv => kv.Key != "batch_index")
            // A1111's grids carry the first image's infotext with the batch size but no position: the grid is all of them.
            .Select(kv => kv.Key == A1111Parameters.Keyword ? new(kv.Key, kv.Value.Replace(", Batch pos: 0", "")) : kv)
            .Append(new("grid", $"{images.Count} images, 4 per row, 2 px padding"));
        return PngWriter.Encode(hwc, w, h, first.Channels, metadata);
    }

    /// <summary>The headers that say what reproduces the answer's images: <c>X-Seed</c> and <c>X-Class-Label</c>.</summary>
    public static void ReproductionHeaders(HttpResponse response, long seed, int classLabel)
    {
        response.Headers["X-Seed"] = seed.ToString(System.Globalization.CultureInfo.InvariantCulture);
        response.Headers["X-Class-Label"] = classLabel.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The 406 for a client that accepts neither answer (<see cref="Negotiate"/> returned false).</summary>
    public static ProblemHttpResult NotAcceptable() => TypedResults.Problem(statusCode: StatusCodes.Status406NotAcceptable, title: "Not acceptable",
        detail: "this endpoint answers image/png (the default) or application/json; set Accept to one of them");

    /// <summary>The 400 for <c>?index=</c> outside the <paramref name="count"/> images of a result.</summary>
    public static ValidationProblem BadIndex(int index, int count) =>
        ImageBody.Invalid(new() { ["index"] = [$"index must be in 0..{count - 1} (this job made {count} image(s)), got {index}"] });

    /// <summary>image/png unless the client prefers application/json; false when it accepts neither.</summary>
    public static bool Negotiate(HttpRequest request, out bool json)
    {
        json = false;
        var accept = request.GetTypedHeaders().Accept;
        if (accept is null || accept.Count == 0) return true;
        double Quality(string type) => accept
            .Where(a => a.MediaType.HasValue && a.MatchesMediaType(type))
            .Select(a => a.Quality ?? 1.0).DefaultIfEmpty(0).Max();
        double png = Quality("image/png"), js = Quality("application/json");
        json = js > png;
        return Math.Max(png, js) > 0;
    }

    public static bool IsJson(string contentType) =>
        MediaTypeHeaderValue.TryParse(contentType, out var mt) &&
        (mt.MediaType.Equals("application/json", StringComparison.OrdinalIgnoreCase) || mt.Suffix.Equals("json", StringComparison.OrdinalIgnoreCase));
}
