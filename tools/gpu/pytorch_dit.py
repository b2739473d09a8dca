# Same-GPU reference: a DiT-XL/2 forward written directly in PyTorch eager (no compile), shapes as the official
# models.py (adaLN-Zero, fused qkv, SDPA), timed the way `bench forward` times ours: median of N after warm-up.
import math, sys, time, torch, torch.nn as nn, torch.nn.functional as F
D, depth, heads, p, C, T = 1152, 28, 16, 2, 4, 256
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.qkv = nn.Linear(D, 3*D); s.proj = nn.Linear(D, D)
        s.fc1 = nn.Linear(D, 4*D); s.fc2 = nn.Linear(4*D, D); s.ada = nn.Linear(D, 6*D)
    def forward(s, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = s.ada(F.silu(c)).chunk(6, 1)
        h = F.layer_norm(x, (D,), eps=1e-6) * (1 + sc1[:, None]) + sh1[:, None]
        n = x.shape[0]; q, k, v = s.qkv(h).reshape(n, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
        x = x + g1[:, None] * s.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, T, D))
        h = F.layer_norm(x, (D,), eps=1e-6) * (1 + sc2[:, None]) + sh2[:, None]
        return x + g2[:, None] * s.fc2(F.gelu(s.fc1(h), approximate="tanh"))
class DiT(nn.Module):
    def __init__(s):
        super().__init__(); s.patch = nn.Conv2d(C, D, p, p); s.pos = nn.Parameter(torch.randn(1, T, D))
        s.t1 = nn.Linear(256, D); s.t2 = nn.Linear(D, D); s.y = nn.Embedding(1001, D)
        s.blocks = nn.ModuleList(Block() for _ in range(depth)); s.fada = nn.Linear(D, 2*D); s.out = nn.Linear(D, p*p*2*C)
    def forward(s, x, t, y):
        x = s.patch(x).flatten(2).transpose(1, 2) + s.pos
        f = torch.exp(-math.log(10000) * torch.arange(128, device=x.device) / 128)
        a = t[:, None].float() * f[None]; te = torch.cat([a.cos(), a.sin()], -1).to(x.dtype)
        c = s.t2(F.silu(s.t1(te))) + s.y(y)
        for b in s.blocks: x = b(x, c)
        sh, sc = s.fada(F.silu(c)).chunk(2, 1)
        x = s.out(F.layer_norm(x, (D,), eps=1e-6) * (1 + sc[:, None]) + sh[:, None])
        n = x.shape[0]; x = x.reshape(n, 16, 16, p, p, 2*C).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(n, 2*C, 32, 32)
torch.manual_seed(0)
m = DiT().cuda().eval()
for prm in m.parameters(): prm.data.normal_(0, 0.02)
print(f"# PyTorch {torch.__version__} eager DiT-XL/2 256 forward on {torch.cuda.get_device_name()}")
print("precision\trows\tmedian_ms\tTFLOP/s(2x118.6 Gflops/row)")
for prec in sys.argv[1].split(","):
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = prec == "tf32"
    mm = m.to(torch.bfloat16 if prec == "bf16" else torch.float32)
    for rows in [int(r) for r in sys.argv[2].split(",")]:
        x = torch.randn(rows, C, 32, 32, device="cuda", dtype=next(mm.parameters()).dtype)
        t = torch.randint(0, 1000, (rows,), device="cuda"); y = torch.randint(0, 1000, (rows,), device="cuda")
        ts = []
        with torch.inference_mode():
            for i in range(8):
                torch.cuda.synchronize(); t0 = time.perf_counter(); mm(x, t, y).float().sum().item(); ts.append(time.perf_counter() - t0)
        med = sorted(ts[3:])[len(ts[3:]) // 2]
        print(f"{prec}\t{rows}\t{med*1000:.1f}\t{2*118.6e9*rows/med/1e12:.1f}")
