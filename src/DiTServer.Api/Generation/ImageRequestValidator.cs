using System.Text.Json;
using DiTServer.Core.Imaging;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using FluentValidation;

namespace DiTServer.Api.Generation;

/// <summary>The rules of <see cref="ImageRequest"/> for one model: ranges, names, and the cross-field rules of the sampler
/// options, each refused where it means nothing so that a typo'd sampler cannot hide it. Rules run, and errors are
/// listed, in the order a reader checks a request: class, images, sampler, steps, guidance, then the sampler's options.</summary>
public sealed class ImageRequestValidator : BodyValidator<ImageRequest>
{
    public const int MaxSteps = 1000;
    public const double MaxCfgScale = SamplingOptions.MaxCfgScale;
    private const string IntervalRule = "guidance_interval must be [lo, hi]: two numbers with 0 ≤ lo < hi ≤ 1000 (model timesteps; " +
        "guidance is on for lo ≤ t ≤ hi)";
    private static readonly Dictionary<string, GuidanceMode> Guidances = new() { ["official"] = GuidanceMode.Official, ["all"] = GuidanceMode.All };
    private static readonly System.Collections.Concurrent.ConcurrentDictionary<ImageRequestParser.Limits, ImageRequestValidator> Built = new();

    /// <summary>The validator for a model's limits, built once.</summary>
    public static ImageRequestValidator For(ImageRequestParser.Limits limits) => Shared(Built, limits, l => new ImageRequestValidator(l));

    /// <summary>The served model's own sampling defaults (a distilled student's), or null: the server's.</summary>
    public SamplingOptions? Defaults { get; }

    public ImageRequestValidator(ImageRequestParser.Limits limits)
    {
        var d = Defaults = limits.Defaults; // the served model's own defaults (a distilled student's), or null: the server's
        string range = $"0..{limits.NumClasses - 1}";
        Field(x => x.ClassLabel, v => $"class_label must be an integer class index {range} or a class name, not {JsonText.Show(v)}")
            .Must((_, label, context) => label is not null || Fields(context).Unreadable("class_label"))
            .WithExactMessage((_, _) => $"class_label is required: a class index {range} or a class name (see GET /v1/classes)")
            .Must(label => label is null || label.Trim().Length > 0)
            .WithExactMessage((_, _) => $"class_label is empty; use a class index {range} or a class name (see GET /v1/classes)")
            .Must(label => string.IsNullOrWhiteSpace(label) || limits.Classes.TryResolve(label, limits.NumClasses, out _, out _))
            .WithExactMessage((_, label) => limits.Classes.TryResolve(label!, limits.NumClasses, out int _, out var error) ? "" : error);
        Integer(x => x.NumImages, "num_images", 1, limits.MaxImagesPerRequest);
        Choice(x => x.Sampler, "sampler", SamplerNames.Samplers);
        Integer(x => x.Steps, "steps", 1, MaxSteps);
        Number(x => x.CfgScale, "cfg_scale", 1, MaxCfgScale);
        Field(x => x.Seed, v => $"seed must be an integer in 0..{long.MaxValue}, not {JsonText.Show(v)}")
            .Must(seed => seed is null or >= 0).WithExactMessage((_, seed) => $"seed must be ≥ 0, got {seed}");
        Choice(x => x.Guidance, "guidance", Guidances);
        Number(x => x.Eta, "eta", 0, 1);
        CrossField(x => x.Eta, "eta applies to the ddim sampler only",
            (x, c) => Fields(c).Present("eta") && SamplerOf(x, d) != SamplerKind.Ddim && SamplerOk(x, c));
        CrossField(x => x.CfgScale, "this model was trained without a null class, so cfg_scale must be 1",
            (x, c) => CfgScaleOf(x, d) != 1 && !limits.HasNullClass && !Failed(x.CfgScale, "cfg_scale", c, 1, MaxCfgScale));

        // The ODE solvers' options.
        Choice(x => x.Spacing, "spacing", SamplerNames.Spacings);
        RuleFor(x => x.Spacing).Must((x, _, c) => !(Sent(x.Spacing, "spacing", c) && !SamplerOf(x, d).IsSolver() && SamplerOk(x, c)))
            .WithExactMessage((x, _) => $"spacing applies to the ODE solvers only ({SamplerNames.SolverList}), not {SamplerOf(x, d).Name()}")
            .OverridePropertyName("spacing");
        Integer(x => x.Order, "order", 1, 3);
        RuleFor(x => x.Order).Must((x, _, c) => !OrderMisplaced(x, c, d)).WithExactMessage((x, _) =>
                SamplerOf(x, d) == SamplerKind.DpmPP2M ? $"dpmpp_2m is order 2, or order 1 (DDIM); order {x.Order} is dpmpp_3m or unipc"
                : SamplerOf(x, d).IsSolver()
                ? $"order is fixed by the sampler's name ({SamplerOf(x, d).Name()} is order " +
                    $"{new SamplingOptions { Sampler = SamplerOf(x, d) }.EffectiveOrder}); order (1, 2 or 3) applies to unipc only"
                : "order (1, 2 or 3) applies to unipc only")
            .OverridePropertyName("order");
        Choice(x => x.UniPcVariant, "unipc_variant", SamplerNames.Variants);
        CrossField(x => x.UniPcVariant, "unipc_variant (bh1 or bh2) applies to the unipc sampler only",
            (x, c) => Sent(x.UniPcVariant, "unipc_variant", c) && SamplerOf(x, d) != SamplerKind.UniPc && SamplerOk(x, c));
        Field(x => x.GuidanceInterval,
                v => $"{IntervalRule}, not {(v.ValueKind == JsonValueKind.Array ? v.GetRawText() : JsonText.Show(v))}")
            .Must(i => i is null || IsPair(i))
            .WithExactMessage((_, _, c) => $"{IntervalRule}, not {Fields(c).Raw("guidance_interval")}")
            .Must(i => i is null || !IsPair(i) || (i[0] >= 0 && i[1] <= GuidanceInterval.Max && i[0] < i[1]))
            .WithExactMessage((_, _, c) => $"{IntervalRule}, got {Fields(c).Raw("guidance_interval")}");
        Field(x => x.Thresholding, v => $"thresholding must be true or false, not {JsonText.Show(v)}");
        RuleFor(x => x.Thresholding).Must((x, on, c) => !(on == true && SamplerOk(x, c) && !SamplerOf(x, d).IsSolver()))
            .WithExactMessage((x, _) => $"thresholding applies to the ODE solvers only ({SamplerNames.SolverList}), not {SamplerOf(x, d).Name()}")
            .Must((x, on, c) => !(on == true && limits.IsLatent) || (SamplerOk(x, c) && !SamplerOf(x, d).IsSolver()))
            .WithExactMessage((_, _) => "thresholding is for pixel-space models; this model works on VAE latents, so use thresholding false")
            .OverridePropertyName("thresholding");
        Integer(x => x.CacheInterval, "cache_interval", 1, SamplingOptions.MaxCacheInterval);
        Choice(x => x.CacheMode, "cache_mode", SamplerNames.CacheModes);

        // Image to image: the PNGs are checked from their headers here (no decoding); ToParameters decodes them.
        ImageField(x => x.InitImage, "init_image", limits);
        Field(x => x.Strength, v => $"strength must be a number with 0 < strength ≤ 1, not {JsonText.Show(v)}")
            .Must(s => s is null || (double.IsFinite(s.Value) && s > 0 && s <= 1))
            .WithExactMessage((_, _, c) => $"strength must be in (0, 1]: 0 < strength ≤ 1, got {Fields(c).Raw("strength")}");
        CrossField(x => x.Strength, "strength applies only with init_image (the image to start from)",
            (x, c) => Sent(x.Strength, "strength", c) && !Sent(x.InitImage, "init_image", c));
        ImageField(x => x.Mask, "mask", limits);
        CrossField(x => x.Mask, "mask applies only with init_image: it says which pixels of init_image are redrawn (white) or kept (black)",
            (x, c) => Sent(x.Mask, "mask", c) && !Sent(x.InitImage, "init_image", c));
        RuleFor(x => x.Steps).Must((x, _, c) => !TooFewSteps(x, c, d))
            .WithExactMessage((x, _) => $"steps must be at least the solver's order ({EffectiveOrder(x, d)}) for {SamplerOf(x, d).Name()}, got {StepsOf(x, d)}")
            .OverridePropertyName("steps");
    }

    /// <summary>The sampler asked for, or the default when it is absent or not a sampler: the served model's own
    /// (<paramref name="d"/>, a distilled student's manifest) or else the server's.</summary>
    public static SamplerKind SamplerOf(ImageRequest x, SamplingOptions? d = null) =>
        Lookup(x.Sampler, SamplerNames.Samplers) ?? d?.Sampler ?? SamplerDefaults.Sampler;

    /// <summary>The model's defaults apply to a request's sampler settings when it asks for the model's default sampler
    /// (or none): a student's steps and order are those of its sampler, not of another one.</summary>
    private static SamplingOptions? SameSampler(ImageRequest x, SamplingOptions? d) => d is not null && SamplerOf(x, d) == d.Sampler ? d : null;

    /// <summary>The steps asked for, or the default sampler's default.</summary>
    public static int StepsOf(ImageRequest x, SamplingOptions? d = null) => x.Steps ?? SameSampler(x, d)?.Steps ?? SamplerDefaults.Steps(SamplerOf(x, d));

    /// <summary>The order asked for, or the model's default order for its default sampler, or null (the sampler's own).</summary>
    public static int? OrderOf(ImageRequest x, SamplingOptions? d = null) => x.Order ?? SameSampler(x, d)?.Order;

    /// <summary>The spacing asked for, or the model's default spacing for its default sampler, or null (the sampler's own).</summary>
    public static StepSpacing? SpacingOf(ImageRequest x, SamplingOptions? d = null) =>
        Lookup(x.Spacing, SamplerNames.Spacings) ?? SameSampler(x, d)?.Spacing;

    /// <summary>The cfg scale asked for, or the model's default, or 4.</summary>
    public static double CfgScaleOf(ImageRequest x, SamplingOptions? d = null) => x.CfgScale ?? d?.CfgScale ?? 4.0;

    /// <summary>The model calls the request makes: its steps, or for an edit the last ceil(strength · steps) of them.</summary>
    public static int StepsRunOf(ImageRequest x, SamplingOptions? d = null) =>
        x.InitImage is null ? StepsOf(x, d) : ImageEdit.StepsRun(StepsOf(x, d), x.Strength ?? ImageEdit.DefaultStrength);

    public static GuidanceMode GuidanceOf(ImageRequest x) => Lookup(x.Guidance, Guidances) ?? GuidanceMode.Official;

    /// <summary>The value <paramref name="text"/> names (trimmed, any case), or null.</summary>
    public static TValue? Lookup<TValue>(string? text, IReadOnlyDictionary<string, TValue> choices) where TValue : struct =>
        text is not null && choices.TryGetValue(text.Trim().ToLowerInvariant(), out var value) ? value : null;

    private static bool SamplerOk(ImageRequest x, ValidationContext<ImageRequest> c) =>
        !Fields(c).Failed("sampler") && (x.Sampler is null || Lookup(x.Sampler, SamplerNames.Samplers) is not null);

    /// <summary>The field was sent with a value (not null), readable or not.</summary>
    private static bool Sent(object? value, string name, ValidationContext<ImageRequest> c) => value is not null || Fields(c).Unreadable(name);

    /// <summary>The field has a mistake of its own: unreadable, repeated or out of range.</summary>
    private static bool Failed(double? value, string name, ValidationContext<ImageRequest> c, double min, double max) =>
        Fields(c).Failed(name) || value is { } v && !(double.IsFinite(v) && v >= min && v <= max);

    /// <summary>order sent with a sampler other than unipc, or other than 1 or 2 with dpmpp_2m (order 1 = DDIM).</summary>
    private static bool OrderMisplaced(ImageRequest x, ValidationContext<ImageRequest> c, SamplingOptions? d) =>
        Sent(x.Order, "order", c) && SamplerOf(x, d) != SamplerKind.UniPc && !(SamplerOf(x, d) == SamplerKind.DpmPP2M && x.Order is 1 or 2)
        && SamplerOk(x, c);

    private static int EffectiveOrder(ImageRequest x, SamplingOptions? d) =>
        new SamplingOptions { Sampler = SamplerOf(x, d), Order = OrderOf(x, d) }.EffectiveOrder;

    /// <summary>A solver needs as many steps as its order (checked once steps and order are themselves fine).</summary>
    private static bool TooFewSteps(ImageRequest x, ValidationContext<ImageRequest> c, SamplingOptions? d) =>
        SamplerOf(x, d).IsSolver() && StepsOf(x, d) < EffectiveOrder(x, d)
        && !Failed(x.Steps, "steps", c, 1, MaxSteps) && !Failed(x.Order, "order", c, 1, 3) && !OrderMisplaced(x, c, d);

    private static bool IsPair(double[] interval) => interval.Length == 2 && interval.All(double.IsFinite);

    /// <summary>A base64 PNG of the model's image size: base64 first, then the PNG header (signature, pixel limit, size).</summary>
    private void ImageField(System.Linq.Expressions.Expression<Func<ImageRequest, string?>> property, string name, ImageRequestParser.Limits limits) =>
        Field(property, v => $"{name} must be a string: a base64 PNG of {limits.ImageSize}x{limits.ImageSize} pixels, not {JsonText.Show(v)}")
            .Must(s => s is null || Base64Png.TryDecode(s) is not null)
            .WithExactMessage((_, _) => Base64Png.NotBase64(name))
            .Must(s => s is null || Base64Png.TryDecode(s) is not { } png || HeaderProblem(png, name, limits) is null)
            .WithExactMessage((_, s) => HeaderProblem(Base64Png.TryDecode(s!)!, name, limits)!);

    private static string? HeaderProblem(byte[] png, string name, ImageRequestParser.Limits limits)
    {
        try
        {
            PngImageReader.CheckHeader(png, limits.ImageSize, name);
            return null;
        }
        catch (ImageInputException e) { return e.Reason; }
    }

    private void Integer(System.Linq.Expressions.Expression<Func<ImageRequest, int?>> property, string name, int min, int max) =>
        Field(property, NotAnInteger(name, min, max))
            .Must(n => n is null || (n >= min && n <= max)).WithExactMessage((_, n) => $"{name} must be in {min}..{max}, got {n}");

    private void Number(System.Linq.Expressions.Expression<Func<ImageRequest, double?>> property, string name, double min, double max) =>
        Field(property, v => $"{name} must be a number in {min}..{max}, not {JsonText.Show(v)}")
            .Must(d => d is null || double.IsFinite(d.Value))
            .WithExactMessage((_, _, c) => $"{name} must be a number in {min}..{max}, not {Fields(c).Raw(name)}")
            .Must(d => d is null || !double.IsFinite(d.Value) || (d >= min && d <= max))
            .WithExactMessage((_, _, c) => $"{name} must be in {min}..{max}, got {Fields(c).Raw(name)}");

    private void Choice<TValue>(System.Linq.Expressions.Expression<Func<ImageRequest, string?>> property, string name,
        IReadOnlyDictionary<string, TValue> choices) where TValue : struct
    {
        string allowed = SamplerNames.Alternatives(choices.Keys);
        Field(property, v => $"{name} must be a string: {allowed}, not {JsonText.Show(v)}")
            .Must(s => s is null || Lookup(s, choices) is not null).WithExactMessage((_, s) => $"unknown {name} '{s}'; use {allowed}");
    }
}
