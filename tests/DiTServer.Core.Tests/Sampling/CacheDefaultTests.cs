using DiTServer.Core.Sampling;

namespace DiTServer.Core.Tests;

/// <summary>The model's cache default for long samplers: which requests get it, and that a request's own settings win.</summary>
public class CacheDefaultTests
{
    private static readonly CacheDefault Model = new(3, CacheMode.Taylor, 20);

    [Theory]
    [InlineData(SamplerKind.Ddim, 50, true)]
    [InlineData(SamplerKind.Ddim, 20, true)]
    [InlineData(SamplerKind.Ddpm, 50, false)]  // fresh noise every step: the cache study lost recall
    [InlineData(SamplerKind.Ddim, 19, false)]  // too short: a step moves the hidden state too far
    [InlineData(SamplerKind.UniPc, 50, false)] // the solvers are never cached by default
    [InlineData(SamplerKind.DpmPP2M, 250, false)]
    public void The_default_applies_to_ddim_from_min_steps_on(SamplerKind sampler, int steps, bool applies)
    {
        Assert.Equal(applies, Model.AppliesTo(sampler, steps));
        Assert.Equal(applies ? (3, CacheMode.Taylor) : (1, CacheMode.Reuse), CacheDefault.Resolve(Model, sampler, steps, null, null));
    }

    [Fact]
    public void A_requests_own_interval_and_mode_win()
    {
        Assert.Equal((1, CacheMode.Reuse), CacheDefault.Resolve(Model, SamplerKind.Ddim, 50, 1, null));         // explicitly off
        Assert.Equal((2, CacheMode.Reuse), CacheDefault.Resolve(Model, SamplerKind.Ddim, 50, 2, null));         // its interval, reuse
        Assert.Equal((3, CacheMode.Reuse), CacheDefault.Resolve(Model, SamplerKind.Ddim, 50, null, CacheMode.Reuse)); // its mode
        Assert.Equal((5, CacheMode.Taylor), CacheDefault.Resolve(Model, SamplerKind.UniPc, 10, 5, CacheMode.Taylor)); // asked: any sampler
        Assert.Equal((1, CacheMode.Reuse), CacheDefault.Resolve(null, SamplerKind.Ddpm, 250, null, null));     // no model default
    }

    [Fact]
    public void Its_description_names_the_interval_mode_samplers_and_steps()
    {
        Assert.Equal("cache_interval 3, cache_mode taylor for ddim with at least 20 steps", Model.Describe());
    }
}
