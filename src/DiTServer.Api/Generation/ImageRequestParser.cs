using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;

namespace DiTServer.Api.Generation;

/// <summary>The body of <c>POST /v1/images</c>: read as an <see cref="ImageRequest"/> (<see cref="JsonContract{T}"/>),
/// checked by <see cref="ImageRequestValidator"/>, and turned into the <see cref="GenerationParameters"/> it asks for.</summary>
public static class ImageRequestParser
{
    public const int MaxSteps = ImageRequestValidator.MaxSteps;
    public const double MaxCfgScale = ImageRequestValidator.MaxCfgScale;

    /// <summary>How <c>/v1/images</c> and <c>/v1/jobs</c> word a body that is not a JSON object.</summary>
    public static readonly BodyWording Wording = new("the body is empty; send a JSON object such as {\"class_label\": 3}",
        kind => $"the body must be a JSON object, not {JsonText.Describe(kind)}");

    /// <summary>The model facts validation needs.</summary>
    /// <param name="IsLatent">The model works on VAE latents (dynamic thresholding is refused there).</param>
    /// <param name="ImageSize">The side of the model's images in pixels: an init_image or mask must have it.</param>
    /// <param name="ImageChannels">1 (grayscale) or 3 (RGB): what an init_image is converted to.</param>
    /// <param name="GuidanceInModel">The model takes the guidance scale as an input (a distilled student): one row per image.</param>
    /// <param name="Defaults">The served model's own defaults (sampler, steps, order, spacing, cfg_scale: a distilled
    /// student's manifest); null = the server's.</param>
    /// <param name="DefaultCache">The model's feature-caching default for long samplers (model.json <c>default_cache</c>).</param>
    public sealed record Limits(ClassNames Classes, int NumClasses, bool HasNullClass, int MaxImagesPerRequest, bool IsLatent = false,
        int ImageSize = 0, int ImageChannels = 3, bool GuidanceInModel = false, SamplingOptions? Defaults = null, CacheDefault? DefaultCache = null);

    /// <returns>The parameters, or null with <paramref name="errors"/> keyed by field ("body" for the whole body).</returns>
    public static GenerationParameters? Parse(ReadOnlyMemory<byte> body, Limits limits, out Dictionary<string, string[]> errors)
    {
        errors = new Dictionary<string, string[]>();
        if (JsonContract<ImageRequest>.Read(body, Wording, errors, out var fields) is not { } request) return null;
        ImageRequestValidator.For(limits).Validate(request, fields).AddTo(errors);
        return errors.Count == 0 ? ToParameters(request, limits, errors) : null;
    }

    /// <summary><see cref="ToParameters(ImageRequest, Limits)"/> for a request the validator passed: an uploaded image
    /// whose header was fine but whose data cannot be decoded goes into <paramref name="errors"/> under its field.</summary>
    /// <returns>The parameters, or null with the image's error added.</returns>
    public static GenerationParameters? ToParameters(ImageRequest request, Limits limits, Dictionary<string, string[]> errors)
    {
        try { return ToParameters(request, limits); }
        catch (ImageInputException e)
        {
            errors.AddError(e.ParamName ?? "init_image", e.Reason);
            return null;
        }
    }

    /// <summary>What a valid request asks for, defaults filled in (the served model's own, else the server's): the sampler's
    /// own steps, guidance 4.0, the model's cache default for long samplers, and a random seed below 2^53 when absent, so
    /// JavaScript clients can echo it back exactly.</summary>
    public static GenerationParameters ToParameters(ImageRequest request, Limits limits)
    {
        if (!limits.Classes.TryResolve(request.ClassLabel!, limits.NumClasses, out var label, out var error)) throw new ArgumentException(error);
        var d = limits.Defaults;
        var sampler = ImageRequestValidator.SamplerOf(request, d);
        int steps = ImageRequestValidator.StepsOf(request, d);
        var (cacheInterval, cacheMode) = CacheDefault.Resolve(limits.DefaultCache, sampler, steps, request.CacheInterval,
            ImageRequestValidator.Lookup(request.CacheMode, SamplerNames.CacheModes));
        var options = new SamplingOptions
        {
            Sampler = sampler,
            Steps = steps,
            CfgScale = ImageRequestValidator.CfgScaleOf(request, d),
            Guidance = ImageRequestValidator.GuidanceOf(request),
            Eta = request.Eta ?? 0,
            Seed = request.Seed ?? Random.Shared.NextInt64(0, 1L << 53),
            Spacing = ImageRequestValidator.SpacingOf(request, d),
            Order = ImageRequestValidator.OrderOf(request, d),
            UniPcVariant = ImageRequestValidator.Lookup(request.UniPcVariant, SamplerNames.Variants),
            GuidanceInterval = request.GuidanceInterval is [var lo, var hi] ? new GuidanceInterval(lo, hi) : null,
            Thresholding = request.Thresholding ?? false,
            CacheInterval = cacheInterval,
            CacheMode = cacheMode,
            GuidanceInModel = limits.GuidanceInModel,
        };
        options.Validate(); // the sampler's own rules; the validator is stricter, so this never fires for a valid request
        return new GenerationParameters(label, request.NumImages ?? 1, options, EditOf(request, limits));
    }

    /// <summary>The image to start from, decoded for the model's size and channels; null without init_image.</summary>
    /// <exception cref="ImageInputException">An image cannot be decoded (the validator has checked its base64 and header).</exception>
    private static ImageEdit? EditOf(ImageRequest request, Limits limits)
    {
        if (request.InitImage is not { } init) return null;
        var pixels = PngImageReader.Pixels(Base64Png.Decode(init, "init_image"), limits.ImageSize, limits.ImageChannels, "init_image");
        var mask = request.Mask is { } m ? PngImageReader.Mask(Base64Png.Decode(m, "mask"), limits.ImageSize, "mask") : null;
        return new ImageEdit(pixels, limits.ImageSize, limits.ImageChannels, request.Strength ?? ImageEdit.DefaultStrength, mask);
    }
}
