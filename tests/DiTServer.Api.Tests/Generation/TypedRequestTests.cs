using DiTServer.Api.Generation;
using System.Text;
using DiTServer.Api.Endpoints;
using DiTServer.Api.Jobs;
using DiTServer.Core.Model;
using DiTServer.Core.Sampling;
using DiTServer.Core.Sampling.Solvers;
using DiTServer.Core.Serving;

namespace DiTServer.Api.Tests;

/// <summary>The request records as the contract (<see cref="JsonContract{T}"/>, the validators), without a server: a valid
/// body becomes the parameters it asks for, defaults filled in; a mistaken one lists every mistake at once, type errors
/// beside range and cross-field ones.</summary>
public sealed class TypedRequestTests
{
    private static readonly ImageRequestParser.Limits Limits = new(ClassNames.Numbered(10), 10, HasNullClass: true, MaxImagesPerRequest: 8);

    private static GenerationParameters Valid(string json)
    {
        var parameters = ImageRequestParser.Parse(Encoding.UTF8.GetBytes(json), Limits, out var errors);
        Assert.True(parameters is not null, string.Join("; ", errors.SelectMany(e => e.Value)));
        return parameters;
    }

    private static Dictionary<string, string[]> Invalid(string json)
    {
        Assert.Null(ImageRequestParser.Parse(Encoding.UTF8.GetBytes(json), Limits, out var errors));
        return errors;
    }

    [Theory]
    [InlineData("ddpm", SamplerKind.Ddpm)]
    [InlineData("ddim", SamplerKind.Ddim)]
    [InlineData("dpmpp_2m", SamplerKind.DpmPP2M)]
    [InlineData("dpmpp_3m", SamplerKind.DpmPP3M)]
    [InlineData(" UniPC ", SamplerKind.UniPc)]
    public void Every_sampler_gets_its_default_steps_and_the_other_defaults(string name, SamplerKind kind)
    {
        var p = Valid($$"""{"class_label": "3", "sampler": "{{name}}", "seed": 42}""");
        Assert.Equal(new GenerationParameters(3, 1, new SamplingOptions { Sampler = kind, Steps = SamplerDefaults.Steps(kind), Seed = 42 }), p);
    }

    public static TheoryData<string, SamplingOptions> Options => new()
    {
        { """{"class_label": 1, "steps": 7, "cfg_scale": 1.5, "seed": 9, "guidance": "ALL", "num_images": 2}""",
            new() { Sampler = SamplerDefaults.Sampler, Steps = 7, CfgScale = 1.5, Seed = 9, Guidance = GuidanceMode.All } },
        { """{"class_label": 1, "sampler": "ddim", "eta": 0.5, "seed": 9}""", new() { Sampler = SamplerKind.Ddim, Steps = 10, Eta = 0.5, Seed = 9 } },
        { """{"class_label": 1, "sampler": "dpmpp_2m", "spacing": "LogSNR", "thresholding": true, "seed": 9}""",
            new() { Sampler = SamplerKind.DpmPP2M, Steps = 5, Spacing = StepSpacing.LogSnr, Thresholding = true, Seed = 9 } },
        { """{"class_label": 1, "sampler": "unipc", "order": 3, "unipc_variant": "bh1", "guidance_interval": [0, 700], "steps": 8, "seed": 9}""",
            new() { Sampler = SamplerKind.UniPc, Steps = 8, Order = 3, UniPcVariant = UniPcVariant.Bh1, GuidanceInterval = new(0, 700), Seed = 9 } },
        { """{"class_label": 1, "sampler": "dpmpp_3m", "spacing": null, "order": null, "thresholding": null, "guidance_interval": null, "seed": 9}""",
            new() { Sampler = SamplerKind.DpmPP3M, Steps = 10, Seed = 9 } },
        // null is absent for every optional field: eta too, with a sampler that takes no eta (issue 19).
        { """{"class_label": 1, "sampler": "ddpm", "eta": null, "seed": 9}""", new() { Sampler = SamplerKind.Ddpm, Steps = 50, Seed = 9 } },
    };

    [Theory]
    [MemberData(nameof(Options))]
    public void A_valid_body_gives_the_options_it_asks_for(string json, SamplingOptions expected)
    {
        var p = Valid(json);
        Assert.Equal(expected, p.Sampling);
        Assert.Equal(1, p.ClassLabel);
    }

    [Fact]
    public void An_absent_seed_is_random_below_2_to_the_53()
    {
        var seeds = Enumerable.Range(0, 20).Select(_ => Valid("""{"class_label": 1}""").Sampling.Seed).ToList();
        Assert.All(seeds, s => Assert.InRange(s, 0, (1L << 53) - 1));
        Assert.True(seeds.Distinct().Count() > 1);
    }

    [Fact]
    public void Every_mistake_of_a_body_is_listed_at_once()
    {
        var errors = Invalid("""{"class_label": 1, "steps": "fifty", "num_images": 9, "colour": 1, "seed": -1, "seed": 2, "eta": 0.5, "cfg_scale": 0.50}""");
        Assert.Equal(["colour", "seed", "num_images", "steps", "cfg_scale", "eta"], errors.Keys);
        Assert.StartsWith("unknown field 'colour'; the fields are class_label, num_images, steps,", errors["colour"][0]);
        Assert.Equal(["field 'seed' appears more than once", "seed must be ≥ 0, got -1"], errors["seed"]);
        Assert.Equal(["num_images must be in 1..8, got 9"], errors["num_images"]);
        Assert.Equal(["steps must be an integer in 1..1000, not \"fifty\""], errors["steps"]); // a type error beside range errors
        Assert.Equal(["cfg_scale must be in 1..20, got 0.50"], errors["cfg_scale"]); // the number as sent
        Assert.Equal(["eta applies to the ddim sampler only"], errors["eta"]);
    }

    [Fact]
    public void A_wrong_type_does_not_hide_the_cross_field_rules_of_its_field()
    {
        var errors = Invalid("""{"class_label": 1, "sampler": "ddim", "order": "two", "spacing": 3}""");
        Assert.Equal(["spacing must be a string: time_uniform, logsnr or time_quadratic, not 3",
            "spacing applies to the ODE solvers only (dpmpp_2m, dpmpp_3m, unipc), not ddim"], errors["spacing"]);
        Assert.Equal(["order must be an integer in 1..3, not \"two\"", "order (1, 2 or 3) applies to unipc only"], errors["order"]);
    }

    [Theory]
    [InlineData("""{"class_label": 1, "steps": 3000000000}""", "steps", "steps must be in 1..1000, got 3000000000")]
    [InlineData("""{"class_label": 1, "cfg_scale": 1e400}""", "cfg_scale", "cfg_scale must be a number in 1..20, not 1e400")]
    [InlineData("""{"class_label": 1, "sampler": "{PropertyName}"}""", "sampler",
        "unknown sampler '{PropertyName}'; use ddpm, ddim, dpmpp_2m, dpmpp_3m or unipc")]
    [InlineData("""{"class_label": 1, "guidance_interval": [0,  10, 20]}""", "guidance_interval", "not [0,  10, 20]")]
    public void Messages_quote_the_value_as_sent(string json, string field, string expected) =>
        Assert.Contains(Invalid(json)[field], m => m.EndsWith(expected, StringComparison.Ordinal));

    [Fact]
    public void The_fields_are_the_records_properties()
    {
        Assert.Equal([.. JsonContract<ImageRequest>.Fields, "preview_every"], JsonContract<JobRequest>.Fields);
        Assert.Equal(["class_label", "num_images", "steps"], JsonContract<ImageRequest>.Fields.Take(3));
        Assert.True(OpenAIImageRequestParser.IsField("moderation"));
        Assert.False(OpenAIImageRequestParser.IsField("stream"));
    }

    [Fact]
    public void Jobs_check_preview_every_against_the_jobs_steps_and_the_rest_as_images_do()
    {
        var body = Encoding.UTF8.GetBytes("""{"class_label": 1, "sampler": "ddim", "preview_every": 11}""");
        Assert.Null(JobRequestParser.Parse(body, Limits, null, out var errors));
        Assert.Equal(["preview_every must be 0 (no previews) or in 1..10 (the job's steps), got 11"], errors["preview_every"]);
        var ok = JobRequestParser.Parse(Encoding.UTF8.GetBytes("""{"class_label": 1, "steps": 4, "preview_every": 2, "seed": 5}"""), Limits, null, out _);
        Assert.Equal(new JobRequestParser.Request(Valid("""{"class_label": 1, "steps": 4, "seed": 5}"""), 2), ok);
    }

    [Fact]
    public void The_openai_body_is_checked_by_the_images_rules_in_its_own_names()
    {
        var body = Encoding.UTF8.GetBytes("""{"prompt": 1.5, "n": 0, "size": "1x1", "model": {"any": ["value"]}, "steps": 2, "sampler": "dpmpp_3m"}""");
        Assert.Null(OpenAIImageRequestParser.Parse(body, Limits, 28, out var errors));
        Assert.Equal(["size must be \"28x28\", the model's resolution, not \"1x1\""], errors["size"]);
        Assert.Equal(["prompt must be an integer class index 0..9 or a class name, not 1.5"], errors["prompt"]);
        Assert.Equal(["n must be in 1..8, got 0"], errors["n"]);
        Assert.Equal(["steps must be at least the solver's order (3) for dpmpp_3m, got 2"], errors["steps"]);
        var ok = OpenAIImageRequestParser.Parse(Encoding.UTF8.GetBytes("""{"prompt": "3", "response_format": " URL", "seed": 5, "user": 7}"""),
            Limits, 28, out _);
        Assert.Equal(new OpenAIImageRequestParser.Request(Valid("""{"class_label": 3, "seed": 5}"""), "url"), ok);
    }
}
