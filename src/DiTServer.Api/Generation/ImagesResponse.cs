namespace DiTServer.Api.Generation;

/// <summary>The JSON answer of <c>POST /v1/images</c> (<c>Accept: application/json</c>): every image its own PNG.</summary>
public sealed record ImagesResponse(
    string Model,
    IReadOnlyList<ImageItem> Images);

/// <summary>One image and what reproduces it alone: one generator per request draws every image of the batch, so an
/// image is the request's <c>seed</c>, its <c>index</c> in the batch and the <c>batch_size</c> (with the request's
/// class, steps, sampler and guidance, all also in the PNG's text chunks). <c>sample --labels c,c,… (batch_size times)
/// --seed S --index i</c> writes exactly this image.</summary>
public sealed record ImageItem(
    int Index,
    long Seed,
    int BatchSize,
    int ClassLabel,
    string ClassName,
    string PngBase64);
