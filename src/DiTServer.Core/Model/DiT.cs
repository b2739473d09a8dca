using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;
using F = TorchSharp.torch.nn.functional;

namespace DiTServer.Core.Model;

// The network of facebookresearch/DiT models.py, module by module. Field names are the official
// state-dict names (x_embedder.proj, t_embedder.mlp.0, blocks.3.adaLN_modulation.1, ...), so released
// checkpoints load without a renaming table.

/// <summary>Image to patch tokens with one strided convolution (timm <c>PatchEmbed</c>).</summary>
public sealed class PatchEmbed : Module<Tensor, Tensor>
{
    private readonly Conv2d proj;

    public PatchEmbed(int patchSize, int inChannels, int hiddenSize) : base(nameof(PatchEmbed))
    {
        proj = Conv2d(inChannels, hiddenSize, kernel_size: patchSize, stride: patchSize, bias: true);
        RegisterComponents();
    }

    public Conv2d Proj => proj;

    public override Tensor forward(Tensor x)
    {
        x = proj.forward(x);                  // (N, D, H/p, W/p)
        return x.flatten(2).transpose(1, 2);  // (N, T, D), tokens row-major over (h, w)
    }
}

/// <summary>Embeds scalar timesteps: 256-dim sinusoidal frequencies, then an MLP.</summary>
public sealed class TimestepEmbedder : Module<Tensor, Tensor>
{
    public const int FrequencyEmbeddingSize = 256;
    private readonly Sequential mlp;

    public TimestepEmbedder(int hiddenSize) : base(nameof(TimestepEmbedder))
    {
        mlp = Sequential(Linear(FrequencyEmbeddingSize, hiddenSize), SiLU(), Linear(hiddenSize, hiddenSize));
        RegisterComponents();
    }

    public Sequential Mlp => mlp;

    /// <summary>[cos(t·f) | sin(t·f)] with f = exp(−ln(maxPeriod)·i/half) (cos first, as the original).</summary>
    public static Tensor TimestepEmbedding(Tensor t, int dim, double maxPeriod = 10000)
    {
        int half = dim / 2;
        var freqs = exp(arange(0, half, dtype: float32, device: t.device) * (float)(-Math.Log(maxPeriod)) / half); // (half)
        var args = t.unsqueeze(1).to_type(float32) * freqs.unsqueeze(0);                                          // (N, half)
        var embedding = cat(new[] { cos(args), sin(args) }, dim: -1);                                               // (N, 2·half)
        if (dim % 2 == 1) embedding = cat(new[] { embedding, zeros_like(embedding[.., ..1]) }, dim: -1);
        return embedding;
    }

    public override Tensor forward(Tensor t)
    {
        var tFreq = TimestepEmbedding(t, FrequencyEmbeddingSize); // (N, 256), float32
        var weightType = ((Linear)mlp[0]).weight!.dtype;            // bfloat16 when the model was cast (Precision.BFloat16)
        if (tFreq.dtype != weightType) tFreq = tFreq.to_type(weightType);
        return mlp.forward(tFreq);                                // (N, D)
    }
}

/// <summary>Class labels to vectors; a spare row (index = num_classes) is the null class that label dropout and guidance use.</summary>
public sealed class LabelEmbedder : Module<Tensor, Tensor>
{
    private readonly Embedding embedding_table;
    private readonly int numClasses;
    private readonly double dropoutProb;

    public LabelEmbedder(int numClasses, int hiddenSize, double dropoutProb) : base(nameof(LabelEmbedder))
    {
        this.numClasses = numClasses;
        this.dropoutProb = dropoutProb;
        embedding_table = Embedding(numClasses + (dropoutProb > 0 ? 1 : 0), hiddenSize);
        RegisterComponents();
    }

    public Embedding EmbeddingTable => embedding_table;

    /// <summary>Random generator for label dropout in training; null uses the global one.</summary>
    public Generator? DropoutGenerator { get; set; }

    public override Tensor forward(Tensor labels)
    {
        if (training && dropoutProb > 0)
        {
            // Label dropout: each label becomes the null class with probability p (token_drop).
            var drop = rand(new[] { labels.shape[0] }, generator: DropoutGenerator).to(labels.device) < dropoutProb;
            labels = where(drop, full_like(labels, numClasses), labels);
        }
        return embedding_table.forward(labels); // (N, D)
    }
}

/// <summary>Multi-head self-attention with one fused qkv projection (timm <c>Attention</c>).</summary>
public sealed class Attention : Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly int numHeads;

    public Attention(int dim, int numHeads) : base(nameof(Attention))
    {
        this.numHeads = numHeads;
        qkv = Linear(dim, dim * 3);
        proj = Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long n = x.shape[0], tokens = x.shape[1], dim = x.shape[2];
        var qkvOut = qkv.forward(x).reshape(n, tokens, 3, numHeads, dim / numHeads).permute(2, 0, 3, 1, 4); // (3, N, H, T, hd)
        var o = F.scaled_dot_product_attention(qkvOut[0], qkvOut[1], qkvOut[2]);                            // (N, H, T, hd), softmax(qkᵀ/√hd)v
        return proj.forward(o.transpose(1, 2).reshape(n, tokens, dim));                                     // (N, T, D)
    }
}

/// <summary>Two-layer MLP with tanh-approximated GELU (timm <c>Mlp</c>).</summary>
public sealed class Mlp : Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Module<Tensor, Tensor> act;
    private readonly Linear fc2;

    public Mlp(int dim, int hidden) : base(nameof(Mlp))
    {
        fc1 = Linear(dim, hidden);
        act = GELU(TorchSharp.Modules.GELU.Approximate.tanh);
        fc2 = Linear(hidden, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc2.forward(act.forward(fc1.forward(x)));
}

/// <summary>A DiT block with adaLN-Zero conditioning: shift, scale and gate for attention and MLP come from c (adaLN: no gate).</summary>
public sealed class DiTBlock : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly Attention attn;
    private readonly LayerNorm norm2;
    private readonly Mlp mlp;
    private readonly Sequential adaLN_modulation;

    /// <param name="gated">True for adaLN-Zero. False for the paper's adaLN variant (Section 3.2): shift and scale only,
    /// so c maps to 4·D instead of 6·D and the block starts as a plain pre-norm block, not as the identity.</param>
    public DiTBlock(int hiddenSize, int numHeads, double mlpRatio, bool gated = true) : base(nameof(DiTBlock))
    {
        Gated = gated;
        norm1 = LayerNorm(hiddenSize, eps: 1e-6, elementwise_affine: false);
        attn = new Attention(hiddenSize, numHeads);
        norm2 = LayerNorm(hiddenSize, eps: 1e-6, elementwise_affine: false);
        mlp = new Mlp(hiddenSize, (int)(hiddenSize * mlpRatio));
        adaLN_modulation = Sequential(SiLU(), Linear(hiddenSize, (gated ? 6 : 4) * hiddenSize));
        RegisterComponents();
    }

    public bool Gated { get; }

    public Linear Modulation => (Linear)adaLN_modulation[1];

    public override Tensor forward(Tensor x, Tensor c)
    {
        if (!Gated)
        {
            var s = adaLN_modulation.forward(c).chunk(4, dim: 1);                 // shift, scale (attention), shift, scale (MLP): 4 × (N, D)
            x = x + attn.forward(Modulate(norm1.forward(x), s[0], s[1]));       // (N, T, D)
            return x + mlp.forward(Modulate(norm2.forward(x), s[2], s[3]));     // (N, T, D)
        }
        var m = adaLN_modulation.forward(c).chunk(6, dim: 1); // 6 × (N, D)
        Tensor shiftMsa = m[0], scaleMsa = m[1], gateMsa = m[2], shiftMlp = m[3], scaleMlp = m[4], gateMlp = m[5];
        // x + gate·f(x), as one addcmul: the elementwise passes over (N, T, D), not the matmuls, bound a GPU forward
        // in tf32/bf16 (measured on an H200: fewer, fused passes are what eager mode can save).
        x = addcmul(x, gateMsa.unsqueeze(1), attn.forward(Modulate(norm1.forward(x), shiftMsa, scaleMsa)), One); // (N, T, D)
        x = addcmul(x, gateMlp.unsqueeze(1), mlp.forward(Modulate(norm2.forward(x), shiftMlp, scaleMlp)), One);  // (N, T, D)
        return x;
    }

    /// <summary>x·(1 + scale) + shift, broadcast over tokens; one fused pass over x (addcmul) instead of a multiply and an add.</summary>
    public static Tensor Modulate(Tensor x, Tensor shift, Tensor scale) => addcmul(shift.unsqueeze(1), x, 1 + scale.unsqueeze(1), One);

    /// <summary>addcmul's multiplier, made once (a Scalar holds a native handle).</summary>
    private static readonly Scalar One = 1.0;
}

/// <summary>The last layer: adaLN-modulated LayerNorm, then a linear map from tokens to patches.</summary>
public sealed class FinalLayer : Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm norm_final;
    private readonly Linear linear;
    private readonly Sequential adaLN_modulation;

    public FinalLayer(int hiddenSize, int patchSize, int outChannels) : base(nameof(FinalLayer))
    {
        norm_final = LayerNorm(hiddenSize, eps: 1e-6, elementwise_affine: false);
        linear = Linear(hiddenSize, patchSize * patchSize * outChannels);
        adaLN_modulation = Sequential(SiLU(), Linear(hiddenSize, 2 * hiddenSize));
        RegisterComponents();
    }

    public Linear Projection => linear;
    public Linear Modulation => (Linear)adaLN_modulation[1];

    public override Tensor forward(Tensor x, Tensor c)
    {
        var m = adaLN_modulation.forward(c).chunk(2, dim: 1);               // shift, scale: (N, D)
        x = DiTBlock.Modulate(norm_final.forward(x), m[0], m[1]);           // (N, T, D)
        return linear.forward(x);                                          // (N, T, p·p·C_out)
    }
}

/// <summary>Diffusion model with a Transformer backbone (Peebles &amp; Xie 2023): predicts ε (and v) for x_t, t, y.</summary>
public sealed class DiT : Module<Tensor, Tensor, Tensor, Tensor>
{
    private readonly PatchEmbed x_embedder;
    private readonly TimestepEmbedder t_embedder;
    private readonly LabelEmbedder y_embedder;
    private readonly TimestepEmbedder? w_embedder; // guidance-conditioned students only
    private readonly Parameter pos_embed;
    private readonly ModuleList<Module<Tensor, Tensor, Tensor>> blocks;
    private readonly Module<Tensor, Tensor, Tensor> final_layer;

    public DiTConfig Config { get; }

    /// <param name="initGenerator">Draws the initial weights; null uses torch's global generator, as the official code.
    /// Trainers pass their own so that concurrent work cannot change the initialisation.</param>
    public DiT(DiTConfig config, Generator? initGenerator = null) : base(nameof(DiT))
    {
        config.Validate();
        Config = config;
        x_embedder = new PatchEmbed(config.PatchSize, config.InChannels, config.HiddenSize);
        t_embedder = new TimestepEmbedder(config.HiddenSize);
        y_embedder = new LabelEmbedder(config.NumClasses, config.HiddenSize, config.ClassDropoutProb);
        if (config.GuidanceConditioned) w_embedder = new TimestepEmbedder(config.HiddenSize);
        // Fixed sin-cos embedding; stored in every checkpoint, never trained.
        pos_embed = new Parameter(zeros(1, config.NumPatches, config.HiddenSize), requires_grad: false);
        blocks = new ModuleList<Module<Tensor, Tensor, Tensor>>(Enumerable.Range(0, config.Depth)
            .Select(_ => CreateBlock(config)).ToArray());
        final_layer = config.Conditioning is Conditioning.AdaLNZero or Conditioning.AdaLN
            ? new FinalLayer(config.HiddenSize, config.PatchSize, config.OutChannels)
            : new PlainFinalLayer(config.HiddenSize, config.PatchSize, config.OutChannels);
        RegisterComponents();
        InitializeWeights(initGenerator);
    }

    public LabelEmbedder LabelEmbedder => y_embedder;

    private static Module<Tensor, Tensor, Tensor> CreateBlock(DiTConfig c) => c.Conditioning switch
    {
        Conditioning.AdaLNZero => new DiTBlock(c.HiddenSize, c.NumHeads, c.MlpRatio),
        Conditioning.AdaLN => new DiTBlock(c.HiddenSize, c.NumHeads, c.MlpRatio, gated: false),
        Conditioning.CrossAttention => new PreNormBlock(c.HiddenSize, c.NumHeads, c.MlpRatio, crossAttention: true),
        Conditioning.InContext => new PreNormBlock(c.HiddenSize, c.NumHeads, c.MlpRatio, crossAttention: false),
        _ => throw new ArgumentOutOfRangeException(nameof(c), c.Conditioning, "unknown conditioning"),
    };

    /// <summary>The official <c>initialize_weights</c>: Xavier linears, sin-cos positions, N(0, 0.02) embeddings, zeroed adaLN and output.</summary>
    public void InitializeWeights(Generator? generator = null)
    {
        using var _ = no_grad();
        foreach (var (_, module) in named_modules())
        {
            if (module is Linear linear)
            {
                XavierUniform(linear.weight!, generator);
                if (linear.bias is not null) init.zeros_(linear.bias);
            }
        }
        int grid = Config.InputSize / Config.PatchSize;
        using (var pe = PositionEmbedding.SinCos2D(Config.HiddenSize, grid)) pos_embed.copy_(pe.unsqueeze(0));

        // Patch embedding like a Linear: Xavier over the flattened (D, C·p·p) kernel.
        var w = x_embedder.Proj.weight!;
        using (var flat = w.view(w.shape[0], -1)) XavierUniform(flat, generator);
        init.zeros_(x_embedder.Proj.bias!);

        y_embedder.EmbeddingTable.weight!.normal_(0, 0.02, generator);
        ((Linear)t_embedder.Mlp[0]).weight!.normal_(0, 0.02, generator);
        ((Linear)t_embedder.Mlp[2]).weight!.normal_(0, 0.02, generator);
        if (w_embedder is not null)
        {
            // The guidance embedding starts at zero, so a student made from a teacher's weights starts as its conditional model.
            ((Linear)w_embedder.Mlp[0]).weight!.normal_(0, 0.02, generator);
            init.zeros_(((Linear)w_embedder.Mlp[2]).weight!);
        }

        // adaLN-Zero: every block starts as the identity. (The adaLN variant keeps its Xavier modulation:
        // without gates, a zero modulation would not make the block an identity anyway.)
        foreach (var block in blocks.OfType<DiTBlock>().Where(b => b.Gated))
        {
            init.zeros_(block.Modulation.weight!);
            init.zeros_(block.Modulation.bias!);
        }
        // The output starts at zero for every variant, as the official code does.
        var projection = final_layer switch
        {
            FinalLayer f => f.Projection,
            PlainFinalLayer f => f.Projection,
            _ => throw new InvalidOperationException("unknown final layer"),
        };
        if (final_layer is FinalLayer adaptive)
        {
            init.zeros_(adaptive.Modulation.weight!);
            init.zeros_(adaptive.Modulation.bias!);
        }
        init.zeros_(projection.weight!);
        init.zeros_(projection.bias!);
    }

    /// <summary>Replaces every weight but the fixed position embedding with N(0, std²) draws: for benchmarks and tests,
    /// where the official init (zeroed adaLN and output) would make the forward trivial.</summary>
    public void RandomizeWeights(double std, Generator? generator = null)
    {
        using var _ = no_grad();
        foreach (var (name, p) in named_parameters())
            if (name != "pos_embed") p.normal_(0, std, generator);
    }

    /// <summary>U(−a, a) with a = √(6 / (fan_in + fan_out)): torch's xavier_uniform_, which draws exactly this.</summary>
    private static void XavierUniform(Tensor weight, Generator? generator)
    {
        long fanOut = weight.shape[0], fanIn = weight.shape[1];
        double bound = Math.Sqrt(6.0 / (fanIn + fanOut));
        weight.uniform_(-bound, bound, generator);
    }

    /// <summary>x: (N, C, H, W) latents, t: (N) timesteps on the original 0..999 scale, y: (N) labels → (N, C_out, H, W).</summary>
    /// <remarks>A model cast to another dtype (bfloat16) takes and returns x's dtype: the cast happens here, so
    /// samplers and guidance keep float32 latents whatever the network runs in.</remarks>
    public override Tensor forward(Tensor x, Tensor t, Tensor y) => forward(x, t, y, null);

    /// <summary>As <see cref="forward(Tensor, Tensor, Tensor)"/>; w: (N) guidance scales, required by (and only taken by)
    /// a guidance-conditioned model, whose output is then the guided one.</summary>
    public Tensor forward(Tensor x, Tensor t, Tensor y, Tensor? w)
    {
        var (hidden, c) = ForwardBlocks(x, t, y, w); // (N, T, D), (N, D)
        return ForwardFinal(hidden, c, x.dtype);     // (N, C_out, H, W)
    }

    /// <summary>The forward up to the last block: the hidden state the final layer reads (N, T, D), and the condition
    /// c = t + y (+ w) (N, D). Feature caching keeps this hidden state (Sampling/FeatureCache).</summary>
    public (Tensor Hidden, Tensor C) ForwardBlocks(Tensor x, Tensor t, Tensor y, Tensor? w = null)
    {
        System.Threading.Interlocked.Add(ref blockRows, x.shape[0]);
        if (x.dtype != pos_embed.dtype) x = x.to_type(pos_embed.dtype);
        x = x_embedder.forward(x) + pos_embed;      // (N, T, D)
        var tEmb = t_embedder.forward(t);           // (N, D)
        var yEmb = y_embedder.forward(y);           // (N, D)
        var c = WithGuidance(tEmb + yEmb, w);       // (N, D)
        var (h, blockCond) = EnterBlocks(x, tEmb, yEmb, c); // the paper's Section 3.2 variants: see EnterBlocks
        foreach (var block in blocks) h = Block(block, h, blockCond);
        return (LeaveBlocks(h), c);                 // (N, T, D), (N, D)
    }

    /// <summary>Only the embedders: c = t_embedder(t) + y_embedder(y) (+ w_embedder(w)) (N, D), what the final layer is
    /// conditioned on; equal, row for row, to the c of <see cref="ForwardBlocks"/>.</summary>
    public Tensor Condition(Tensor t, Tensor y, Tensor? w = null) =>
        WithGuidance(t_embedder.forward(t) + y_embedder.forward(y), w); // (N, D)

    /// <summary>Scales w to the timestep's range before the sinusoidal embedding: w in [0, 10] spans 0–1000 as t does,
    /// so the embedder's frequencies resolve steps of w as fine as 0.01.</summary>
    public const double GuidanceEmbeddingScale = 100;

    /// <summary>c + w_embedder(w·100) (N, D) for a guidance-conditioned model; c itself for any other.</summary>
    private Tensor WithGuidance(Tensor c, Tensor? w)
    {
        if (w_embedder is null)
            return w is null ? c : throw new ArgumentException("this model is not guidance-conditioned; it takes no guidance scale w", nameof(w));
        if (w is null) throw new ArgumentException("this model is guidance-conditioned: every forward needs its guidance scale w", nameof(w));
        return c + w_embedder.forward(w.to_type(float32) * GuidanceEmbeddingScale); // (N, D)
    }

    /// <summary>The adaLN-conditioned final layer on a hidden state (N, T, D) → (N, C_out, H, W) in <paramref name="ioType"/>.</summary>
    public Tensor ForwardFinal(Tensor hidden, Tensor c, ScalarType ioType)
    {
        var x = final_layer.forward(hidden, c);     // (N, T, p·p·C_out)
        var output = Unpatchify(x);                 // (N, C_out, H, W)
        return output.dtype == ioType ? output : output.to_type(ioType);
    }

    private long blockRows;

    /// <summary>Rows that went through the blocks since this model was made (diagnostics and tests: feature caching
    /// must leave cached rows out of the blocks).</summary>
    public long BlockRowsForwarded => System.Threading.Interlocked.Read(ref blockRows);

    /// <summary>What the blocks see, per conditioning variant (Section 3.2): adaLN and adaLN-Zero blocks get
    /// c = t + y (N, D); cross-attention blocks attend to the two condition tokens [t, y] (N, 2, D); in-context
    /// blocks see [t, y] prepended to the sequence (N, 2 + T, D) and c, which they ignore.</summary>
    private (Tensor X, Tensor Cond) EnterBlocks(Tensor x, Tensor tEmb, Tensor yEmb, Tensor c) => Config.Conditioning switch
    {
        Conditioning.CrossAttention => (x, stack(new[] { tEmb, yEmb }, 1)),                               // (N, T, D), (N, 2, D)
        Conditioning.InContext => (cat(new[] { tEmb.unsqueeze(1), yEmb.unsqueeze(1), x }, 1), c),       // (N, 2 + T, D), (N, D)
        _ => (x, c),
    };

    /// <summary>The in-context variant drops its two condition tokens after the last block.</summary>
    private Tensor LeaveBlocks(Tensor x) => Config.Conditioning == Conditioning.InContext ? x[.., 2..] : x;

    /// <summary>Runs each block in its own dispose scope (default). <c>bench peak --compare-block-scopes</c> switches
    /// it off on its own model to measure what it saves.</summary>
    public bool ScopePerBlock { get; set; } = true;

    /// <summary>One block in its own dispose scope: its intermediates (the MLP's 4·D-wide activations the largest) are
    /// freed when it returns instead of every block's piling up until the caller's scope ends (GBs at XL/2, batch 8, all
    /// fresh pages on every forward). Autograd keeps what it saved for backward on the native side, so training is unaffected.</summary>
    private Tensor Block(Module<Tensor, Tensor, Tensor> block, Tensor x, Tensor c)
    {
        if (!ScopePerBlock) return block.forward(x, c);
        using var scope = NewDisposeScope();
        return block.forward(x, c).MoveToOuterDisposeScope();
    }

    /// <summary>(N, T, p·p·C) → (N, C, H, W), the einsum 'nhwpqc->nchpwq' of the original.</summary>
    public Tensor Unpatchify(Tensor x)
    {
        int c = Config.OutChannels, p = Config.PatchSize;
        long h = (long)Math.Round(Math.Sqrt(x.shape[1]));
        if (h * h != x.shape[1]) throw new ArgumentException($"token count {x.shape[1]} is not a square");
        x = x.reshape(x.shape[0], h, h, p, p, c).permute(0, 5, 1, 3, 2, 4); // (N, C, h, p, w, p)
        return x.reshape(x.shape[0], c, h * p, h * p);
    }
}
