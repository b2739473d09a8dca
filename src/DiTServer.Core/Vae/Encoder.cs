using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Vae;

/// <summary>Image to latent moments: conv_in, down levels, mid block, GroupNorm+SiLU, conv_out to 2·latent channels (diffusers autoencoders/vae.py
/// <c>Encoder</c>, double_z=True).</summary>
public sealed class Encoder : Module<Tensor, Tensor>
{
    private readonly Conv2d conv_in;
    private readonly ModuleList<ResnetLevel2D> down_blocks;
    private readonly UNetMidBlock2D mid_block;
    private readonly GroupNorm conv_norm_out;
    private readonly Conv2d conv_out;

    public Encoder(VaeConfig config) : base(nameof(Encoder))
    {
        var ch = config.BlockOutChannels;
        int groups = config.NormNumGroups;
        conv_in = Conv2d(config.InChannels, ch[0], kernel_size: 3, stride: 1, padding: 1);
        down_blocks = ResnetLevel2D.Down(ch, config.LayersPerBlock, groups);
        mid_block = new UNetMidBlock2D(ch[^1], groups);
        conv_norm_out = GroupNorm(groups, ch[^1], eps: ResnetBlock2D.Eps);
        conv_out = Conv2d(ch[^1], 2 * config.LatentChannels, kernel_size: 3, stride: 1, padding: 1);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        var h = conv_in.forward(x);                           // (N, ch0, H, W)
        foreach (var block in down_blocks) h = block.forward(h); // (N, chLast, H/f, W/f)
        h = mid_block.forward(h);
        h = F.silu(conv_norm_out.forward(h));
        return conv_out.forward(h);                           // (N, 2·latent, H/f, W/f): mean | logvar
    }
}
