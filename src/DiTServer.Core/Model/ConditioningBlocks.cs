using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Model;

// The three conditioning designs the DiT paper compares with adaLN-Zero (Section 3.2, Figure 3):
// adaLN without gates, cross-attention to [t, y], and in-context tokens. Each block takes (x, cond):
// cond is c = t + y (N, D) for adaLN, the token pair [t, y] (N, 2, D) for cross-attention, and is
// unused for in-context (the tokens already sit in x).

/// <summary>A block with adaptive LayerNorm: shift and scale from c, no gates, so it starts as a plain pre-norm block.</summary>
public sealed class AdaLNBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;
    private readonly Sequential adaLN_modulation;

    public AdaLNBlock(int hiddenSize, int numHeads, double mlpRatio) : base(nameof(AdaLNBlock))
    {
        norm1 = LayerNorm(hiddenSize, eps: 1e-6, elementwise_affine: false);
        attn = new Attention(hiddenSize, numHeads);
        norm2 = LayerNorm(hiddenSize, eps: 1e-6, elementwise_affine: false);
        mlp = new Mlp(hiddenSize, (int)(hiddenSize * mlpRatio));
        adaLN_modulation = Sequential(SiLU(), Linear(hiddenSize, 4 * hiddenSize));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor c)
    {
        var m = adaLN_modulation.forward(c).chunk(4, dim: 1);                        // 4 × (N, D)
        x = x + attn.forward(DiTBlock.Modulate(norm1.forward(x), m[0], m[1]));       // (N, T, D)
        return x + mlp.forward(DiTBlock.Modulate(norm2.forward(x), m[2], m[3]));     // (N, T, D)
    }
}

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

/// <summary>A pre-norm block with an extra cross-attention layer over the [t, y] tokens after self-attention.</summary>
public sealed class CrossAttentionBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly CrossAttention cross_attn;
    private readonly LayerNorm norm3;
    private readonly Mlp mlp;

    public CrossAttentionBlock(int hiddenSize, int numHeads, double mlpRatio) : base(nameof(CrossAttentionBlock))
    {
        norm1 = LayerNorm(hiddenSize, eps: 1e-6);
        attn = new Attention(hiddenSize, numHeads);
        norm2 = LayerNorm(hiddenSize, eps: 1e-6);
        cross_attn = new CrossAttention(hiddenSize, numHeads);
        norm3 = LayerNorm(hiddenSize, eps: 1e-6);
        mlp = new Mlp(hiddenSize, (int)(hiddenSize * mlpRatio));
        RegisterComponents();
    }

    /// <param name="x">(N, T, D) image tokens.</param>
    /// <param name="cond">(N, 2, D) the timestep and class tokens.</param>
    public override Tensor forward(Tensor x, Tensor cond)
    {
        x = x + attn.forward(norm1.forward(x));               // (N, T, D)
        x = x + cross_attn.forward(norm2.forward(x), cond);   // (N, T, D)
        return x + mlp.forward(norm3.forward(x));             // (N, T, D)
    }
}

/// <summary>A plain pre-norm ViT block; with in-context conditioning the [t, y] tokens are part of x.</summary>
public sealed class InContextBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;

    public InContextBlock(int hiddenSize, int numHeads, double mlpRatio) : base(nameof(InContextBlock))
    {
        norm1 = LayerNorm(hiddenSize, eps: 1e-6);
        attn = new Attention(hiddenSize, numHeads);
        norm2 = LayerNorm(hiddenSize, eps: 1e-6);
        mlp = new Mlp(hiddenSize, (int)(hiddenSize * mlpRatio));
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor unused)
    {
        x = x + attn.forward(norm1.forward(x));   // (N, 2 + T, D)
        return x + mlp.forward(norm2.forward(x)); // (N, 2 + T, D)
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
