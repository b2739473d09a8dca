using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Model;

// The three conditioning designs the DiT paper compares with adaLN-Zero (Section 3.2, Figure 3):
// adaLN without gates (DiTBlock with gated: false, in DiT.cs), cross-attention to [t, y], and in-context tokens.
// The last two are the plain pre-norm block below; it takes (x, cond) like every block: cond is the token pair
// [t, y] (N, 2, D) for cross-attention, and is unused in context (the tokens already sit in x).

/// <summary>Multi-head attention from image tokens (queries) to condition tokens (keys and values).</summary>
public sealed class CrossAttention : Module<Tensor, Tensor, Tensor>
{
    private readonly Linear q;
    private readonly Linear kv;
    private readonly Linear proj;
    private readonly int numHeads;

    public CrossAttention(int dim, int numHeads) : base(nameof(CrossAttention))
    {
        this.numHeads = numHeads;
        q = Linear(dim, dim);
        kv = Linear(dim, 2 * dim);
        proj = Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context)
    {
        long n = x.shape[0], tokens = x.shape[1], dim = x.shape[2], ctx = context.shape[1], hd = dim / numHeads;
        var query = q.forward(x).reshape(n, tokens, numHeads, hd).transpose(1, 2);                  // (N, H, T, hd)
        var keyValue = kv.forward(context).reshape(n, ctx, 2, numHeads, hd).permute(2, 0, 3, 1, 4); // (2, N, H, 2, hd)
        var o = F.scaled_dot_product_attention(query, keyValue[0], keyValue[1]);                     // (N, H, T, hd)
        return proj.forward(o.transpose(1, 2).reshape(n, tokens, dim));                              // (N, T, D)
    }
}

/// <summary>A pre-norm ViT block; with cross-attention, an extra layer after self-attention attends to the [t, y] tokens.</summary>
public sealed class PreNormBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly CrossAttention? cross_attn; // the cross-attention variant only; it then takes norm2,
    private readonly LayerNorm? norm3;           // and the MLP reads norm3
    private readonly Mlp mlp;

    public PreNormBlock(int hiddenSize, int numHeads, double mlpRatio, bool crossAttention) : base(nameof(PreNormBlock))
    {
        norm1 = LayerNorm(hiddenSize, eps: 1e-6);
        attn = new Attention(hiddenSize, numHeads);
        norm2 = LayerNorm(hiddenSize, eps: 1e-6);
        if (crossAttention)
        {
            cross_attn = new CrossAttention(hiddenSize, numHeads);
            norm3 = LayerNorm(hiddenSize, eps: 1e-6);
        }
        mlp = new Mlp(hiddenSize, (int)(hiddenSize * mlpRatio));
        RegisterComponents();
    }

    /// <param name="x">(N, T, D) image tokens; in context (N, 2 + T, D), the [t, y] tokens first.</param>
    /// <param name="cond">(N, 2, D) the timestep and class tokens for cross-attention; unused in context.</param>
    public override Tensor forward(Tensor x, Tensor cond)
    {
        x = x + attn.forward(norm1.forward(x));                             // (N, T, D)
        if (cross_attn is null) return x + mlp.forward(norm2.forward(x));   // (N, T, D)
        x = x + cross_attn.forward(norm2.forward(x), cond);                 // (N, T, D)
        return x + mlp.forward(norm3!.forward(x));                          // (N, T, D)
    }
}

/// <summary>The last layer for token-conditioned variants: LayerNorm, then tokens to patches (no modulation).</summary>
public sealed class PlainFinalLayer : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm_final;
    private readonly Linear linear;

    public PlainFinalLayer(int hiddenSize, int patchSize, int outChannels) : base(nameof(PlainFinalLayer))
    {
        norm_final = LayerNorm(hiddenSize, eps: 1e-6);
        linear = Linear(hiddenSize, patchSize * patchSize * outChannels);
        RegisterComponents();
    }

    public Linear Projection => linear;

    public override Tensor forward(Tensor x, Tensor unused) => linear.forward(norm_final.forward(x)); // (N, T, p·p·C_out)
}
