namespace DiTServer.Core.Sampling;

/// <summary>A run that starts from an image instead of pure noise: the image noised to the timestep that leaves
/// <see cref="Strength"/> of the schedule, then denoised (SDEdit, Meng et al. 2021); with a <see cref="Mask"/>, only the
/// white region is redrawn and the rest kept (RePaint, Lugmayr et al. 2022; blended latent diffusion).</summary>
/// <remarks>Plain arrays, no tensors, so the request records that carry it stay tensor-free; the runner turns it into
/// tensors when the run starts. Records compare arrays by reference, which is all the serving code needs.</remarks>
public sealed record ImageEdit
{
    /// <summary>The strength a request without one gets (AUTOMATIC1111's and diffusers' default).</summary>
    public const double DefaultStrength = 0.75;

    /// <param name="pixels">The init image, HWC uint8, <paramref name="size"/>² × <paramref name="channels"/> bytes
    /// (what <see cref="Imaging.PngImageReader.Pixels"/> returns for the model's size and channels).</param>
    /// <param name="strength">0 &lt; s ≤ 1: the share of the schedule that is run again; 1 starts from (almost) noise.</param>
    /// <param name="mask">size² bytes, one per pixel: ≥ 128 (white) is redrawn, below (black) is kept; null = all redrawn.</param>
    /// <exception cref="ArgumentException">A length or the strength is wrong; the parameter name is the wire name.</exception>
    public ImageEdit(byte[] pixels, int size, int channels, double strength = DefaultStrength, byte[]? mask = null)
    {
        if (size < 1 || channels is not (1 or 3)) throw new ArgumentException($"an image is size ≥ 1 with 1 or 3 channels, got {size}, {channels}");
        if (pixels.Length != size * size * channels)
            throw new ArgumentException(
                $"init_image must be {size}x{size} with {channels} channel(s) ({size * size * channels} bytes), got {pixels.Length} bytes",
                "init_image");
        if (!(strength > 0 && strength <= 1)) throw new ArgumentOutOfRangeException("strength", strength, "strength must be in (0, 1]: 0 < strength ≤ 1");
        if (mask is not null && mask.Length != size * size)
            throw new ArgumentException($"mask must be {size}x{size} ({size * size} bytes), got {mask.Length} bytes", "mask");
        Pixels = pixels;
        Size = size;
        Channels = channels;
        Strength = strength;
        Mask = mask;
    }

    /// <summary>HWC uint8 of the init image.</summary>
    public byte[] Pixels { get; }
    /// <summary>Width and height in pixels (the model's image size).</summary>
    public int Size { get; }
    /// <summary>1 (grayscale) or 3 (RGB): the model's image channels.</summary>
    public int Channels { get; }
    public double Strength { get; }
    /// <summary>One byte per pixel, row-major: ≥ 128 is redrawn, below is kept; null = the whole image is redrawn.</summary>
    public byte[]? Mask { get; }

    /// <summary>True where the mask redraws the pixel.</summary>
    public static bool Redraws(byte maskValue) => maskValue >= 128;

    /// <summary>Steps a run of <paramref name="steps"/> steps really runs from this image: ceil(s·S), at least 1.</summary>
    public int StepsRun(int steps) => StepsRun(steps, Strength);

    /// <summary>ceil(s·S), at least 1; s·S is rounded to 9 decimals first, so that 0.3·10 is 3 steps, not 4.</summary>
    public static int StepsRun(int steps, double strength) =>
        Math.Clamp((int)Math.Ceiling(Math.Round(strength * steps, 9)), 1, steps);

    /// <summary>What the PNG metadata says of the mask: "K of N pixels redrawn"; null without a mask.</summary>
    public string? MaskSummary() => Mask is null ? null
        : FormattableString.Invariant($"{Mask.Count(Redraws)} of {Mask.Length} pixels redrawn");

    /// <summary>The init image in model space: CHW float32 in [−1, 1], the inverse of the fixtures' pixel rule.</summary>
    public float[] ModelPixels()
    {
        int plane = Size * Size;
        var chw = new float[plane * Channels];
        for (int i = 0; i < plane; i++)
            for (int c = 0; c < Channels; c++)
                chw[c * plane + i] = Pixels[i * Channels + c] / 127.5f - 1f;
        return chw;
    }

    /// <summary>The mask as 1 (redraw) or 0 (keep) per pixel, row-major; all ones without a mask.</summary>
    public float[] RedrawWeights()
    {
        var weights = new float[Size * Size];
        for (int i = 0; i < weights.Length; i++) weights[i] = Mask is null || Redraws(Mask[i]) ? 1f : 0f;
        return weights;
    }

    /// <summary>Pastes the kept pixels of the init image over a generated image (HWC, same size): kept pixels come
    /// back exactly, whatever the VAE made of them. Without a mask the generated image is returned unchanged.</summary>
    public byte[] Composite(byte[] generatedHwc)
    {
        if (Mask is null) return generatedHwc;
        if (generatedHwc.Length != Pixels.Length) throw new ArgumentException("the generated image differs in size from the init image");
        var result = (byte[])generatedHwc.Clone();
        for (int i = 0; i < Mask.Length; i++)
            if (!Redraws(Mask[i])) Array.Copy(Pixels, i * Channels, result, i * Channels, Channels);
        return result;
    }
}
