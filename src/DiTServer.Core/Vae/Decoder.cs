using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Vae;

/// <summary>Latent to image: conv_in, mid block, up levels over the reversed widths, GroupNorm+SiLU, conv_out (diffusers autoencoders/vae.py
/// <c>Decoder</c>).</summary>
public sealed class Decoder : Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly UNetMidBlock2D mid_block;
    private readonly ModuleList<ResnetLevel2D> up_blocks;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public Decoder(VaeConfig config) : base(nameof(Decoder))
    {
        var reversed = config.BlockOutChannels.Reverse().ToArray();
        int groups = config.NormNumGroups;
        conv_in = Conv2d(config.LatentChannels, reversed[0], kernel_size: 3, stride: 1, padding: 1);
        mid_block = new UNetMidBlock2D(reversed[0], groups);
        up_blocks = ResnetLevel2D.Up(reversed, config.LayersPerBlock + 1, groups); // one more resnet per level than the encoder, as diffusers
        conv_norm_out = GroupNorm(groups, reversed[^1], eps: ResnetBlock2D.Eps);
        conv_out = Conv2d(reversed[^1], config.OutChannels, kernel_size: 3, stride: 1, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor z)
    {
        var h = conv_in.forward(z);                          // (N, chLast, h, w)
        h = mid_block.forward(h);
        foreach (var block in up_blocks) h = block.forward(h); // (N, ch0, h·f, w·f)
        h = F.silu(conv_norm_out.forward(h));
        return conv_out.forward(h);                          // (N, out, h·f, w·f)
    }
}
