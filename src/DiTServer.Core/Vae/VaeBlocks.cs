using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Vae;

// The building blocks of diffusers' AutoencoderKL (v0.21–0.31), as the VAE instantiates them: no time
// embedding (temb_channels=None), output_scale_factor 1, dropout 0, GroupNorm eps 1e-6. Field names are the
// diffusers state-dict names (norm1, conv1, conv_shortcut, downsamplers.0.conv, attentions.0.to_q, ...).

/// <summary>Residual block GroupNorm→SiLU→conv3×3→GroupNorm→SiLU→conv3×3, plus a 1×1 shortcut when channels change (diffusers resnet.py
/// <c>ResnetBlock2D</c>).</summary>
public sealed class ResnetBlock2D : Module<Tensor, Tensor>
{
    public const double Eps = 1e-6;

    private readonly GroupNorm norm1;
    private readonly Conv2d conv1;
    private readonly GroupNorm norm2;
    private readonly Conv2d conv2;
    private readonly Conv2d? conv_shortcut;

    public ResnetBlock2D(int inChannels, int outChannels, int groups) : base(nameof(ResnetBlock2D))
    {
        norm1 = GroupNorm(groups, inChannels, eps: Eps);
        conv1 = Conv2d(inChannels, outChannels, kernel_size: 3, stride: 1, padding: 1);
        norm2 = GroupNorm(groups, outChannels, eps: Eps);
        conv2 = Conv2d(outChannels, outChannels, kernel_size: 3, stride: 1, padding: 1);
        // use_in_shortcut defaults to (in != out); the shortcut is a 1×1 conv (conv_shortcut=False in diffusers).
        if (inChannels != outChannels) conv_shortcut = Conv2d(inChannels, outChannels, kernel_size: 1, stride: 1, padding: 0L);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = conv1.forward(F.silu(norm1.forward(x)));        // (N, Cout, H, W)
        h = conv2.forward(F.silu(norm2.forward(h)));            // (N, Cout, H, W); dropout is identity in eval
        var shortcut = conv_shortcut is null ? x : conv_shortcut.forward(x);
        return shortcut + h;                                    // output_scale_factor 1
    }
}

/// <summary>Halves H and W: zero-pad right and bottom by one, then a stride-2 3×3 conv without padding (diffusers downsampling.py <c>Downsample2D</c>,
/// padding=0).</summary>
public sealed class Downsample2D : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Downsample2D(int channels) : base(nameof(Downsample2D))
    {
        conv = Conv2d(channels, channels, kernel_size: 3, stride: 2, padding: 0L);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        // The asymmetric pad comes from the original LDM code; a symmetric pad=1 conv would shift the grid.
        var padded = F.pad(x, new long[] { 0, 1, 0, 1 }, PaddingModes.Constant, 0); // (N, C, H+1, W+1)
        return conv.forward(padded);                                                 // (N, C, H/2, W/2)
    }
}

/// <summary>Doubles H and W by nearest-neighbour repetition, then a 3×3 conv (diffusers upsampling.py <c>Upsample2D</c>).</summary>
public sealed class Upsample2D : Module<Tensor, Tensor>
{
    private readonly Conv2d conv;

    public Upsample2D(int channels) : base(nameof(Upsample2D))
    {
        conv = Conv2d(channels, channels, kernel_size: 3, stride: 1, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var up = F.interpolate(x, scale_factor: new double[] { 2, 2 }, mode: InterpolationMode.Nearest); // (N, C, 2H, 2W)
        return conv.forward(up);
    }
}

/// <summary>Single-head self-attention over the H·W positions with a residual connection (diffusers attention_processor.py <c>Attention</c> as built by
/// <c>UNetMidBlock2D</c>: heads = 1, dim_head = C, residual_connection, rescale_output_factor 1).</summary>
public sealed class VaeAttention : Module<Tensor, Tensor>
{
    private readonly GroupNorm group_norm;
    private readonly Linear to_q;
    private readonly Linear to_k;
    private readonly Linear to_v;
    private readonly ModuleList<Linear> to_out; // diffusers: [Linear, Dropout]; the dropout has no weights

    public VaeAttention(int channels, int groups) : base(nameof(VaeAttention))
    {
        group_norm = GroupNorm(groups, channels, eps: ResnetBlock2D.Eps);
        to_q = Linear(channels, channels);
        to_k = Linear(channels, channels);
        to_v = Linear(channels, channels);
        to_out = ModuleList(Linear(channels, channels));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long n = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        var tokens = group_norm.forward(x).view(n, c, h * w).transpose(1, 2); // (N, HW, C); norm before flattening = norm over channels
        var q = to_q.forward(tokens).unsqueeze(1);                             // (N, 1, HW, C): one head of dim C
        var k = to_k.forward(tokens).unsqueeze(1);
        var v = to_v.forward(tokens).unsqueeze(1);
        var o = F.scaled_dot_product_attention(q, k, v).squeeze(1);            // (N, HW, C), softmax(qkᵀ/√C)v
        o = to_out[0].forward(o);                                              // (N, HW, C)
        var spatial = o.transpose(1, 2).reshape(n, c, h, w);                   // (N, C, H, W)
        return spatial + x;                                                    // residual_connection=True
    }
}

/// <summary>Middle of encoder and decoder: resnet, attention, resnet at constant width (diffusers unet_2d_blocks.py <c>UNetMidBlock2D</c>, one
/// layer).</summary>
public sealed class UNetMidBlock2D : Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    private readonly ModuleList<VaeAttention> attentions;

    public UNetMidBlock2D(int channels, int groups) : base(nameof(UNetMidBlock2D))
    {
        resnets = ModuleList(new ResnetBlock2D(channels, channels, groups), new ResnetBlock2D(channels, channels, groups));
        attentions = ModuleList(new VaeAttention(channels, groups));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = resnets[0].forward(x);
        x = attentions[0].forward(x);
        return resnets[1].forward(x); // (N, C, H, W)
    }
}

/// <summary>One level of the encoder or the decoder: <c>numLayers</c> resnets, then an optional 2× resampler (diffusers
/// unet_2d_blocks.py <c>DownEncoderBlock2D</c>, whose <see cref="Downsample2D"/> sits under "downsamplers", and
/// <c>UpDecoderBlock2D</c>, whose <see cref="Upsample2D"/> sits under "upsamplers"; they differ in nothing else).</summary>
public sealed class ResnetLevel2D : Module<Tensor, Tensor>
{
    private readonly ModuleList<ResnetBlock2D> resnets;
    // One of the two, the other null (no keys); empty on the last level, so no keys appear either.
    private readonly ModuleList<Downsample2D>? downsamplers;
    private readonly ModuleList<Upsample2D>? upsamplers;

    private ResnetLevel2D(int inChannels, int outChannels, int numLayers, int groups, bool down, bool resample)
        : base(down ? VaeConfig.DownBlockType : VaeConfig.UpBlockType)
    {
        resnets = ModuleList(Enumerable.Range(0, numLayers)
            .Select(i => new ResnetBlock2D(i == 0 ? inChannels : outChannels, outChannels, groups)).ToArray());
        if (down) downsamplers = resample ? ModuleList(new Downsample2D(outChannels)) : ModuleList<Downsample2D>();
        else upsamplers = resample ? ModuleList(new Upsample2D(outChannels)) : ModuleList<Upsample2D>();
        RegisterComponents();
    }

    /// <summary>The encoder's levels over <paramref name="widths"/> (<c>block_out_channels</c>): level i goes from width
    /// i − 1 (the first from width 0) to width i, and all but the last halve H and W.</summary>
    public static ModuleList<ResnetLevel2D> Down(IReadOnlyList<int> widths, int numLayers, int groups) => Levels(widths, numLayers, groups, down: true);

    /// <summary>The decoder's levels over <paramref name="widths"/> (the reversed <c>block_out_channels</c>), as
    /// <see cref="Down"/> but doubling H and W.</summary>
    public static ModuleList<ResnetLevel2D> Up(IReadOnlyList<int> widths, int numLayers, int groups) => Levels(widths, numLayers, groups, down: false);

    private static ModuleList<ResnetLevel2D> Levels(IReadOnlyList<int> widths, int numLayers, int groups, bool down) =>
        ModuleList(widths.Select((w, i) => new ResnetLevel2D(widths[Math.Max(i - 1, 0)], w, numLayers, groups, down, resample: i < widths.Count - 1))
            .ToArray());

    public override Tensor forward(Tensor x)
    {
        foreach (var resnet in resnets) x = resnet.forward(x);                // (N, Cout, H, W)
        if (downsamplers is not null) foreach (var d in downsamplers) x = d.forward(x); // (N, Cout, H/2, W/2)
        if (upsamplers is not null) foreach (var u in upsamplers) x = u.forward(x);     // (N, Cout, 2H, 2W)
        return x;
    }
}
