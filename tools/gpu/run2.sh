#!/bin/bash
# Second, shorter device run: the forward after fusing the block's elementwise passes (addcmul), against PyTorch eager
# in the same call, and the generate/serve numbers with the VAE on TF32 in bf16 mode. Output: $OUT/log.txt + tsv.
exec > >(tee "$OUT/log.txt") 2>&1
R=$PWD; G=$R/.gpu; S=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - S )) s)"; }
mkdir -p /tmp/dn /tmp/app && tar xJf $G/dotnet.tar.xz -C /tmp/dn && tar xJf $G/app.tar.xz -C /tmp/app
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export DOTNET_ROOT=/tmp/dn DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_NOLOGO=1
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
B="/tmp/dn/dotnet /tmp/app/DiTServer.Api.dll"
step "forward XL/2 256, ours"
for p in bf16 tf32 fp32; do timeout 60 $B bench forward --device cuda --precision $p --arch DiT-XL/2 --batch 2,8,32,128 --warmup 2 --iters 5; done | tee $OUT/forward.tsv
step "forward, pytorch eager"
timeout 60 python3 $G/pytorch_dit.py bf16,tf32,fp32 2,8,32,128 | tee $OUT/pytorch.tsv
step "generate"
timeout 100 $B bench generate --device cuda --precision bf16,tf32 --batch 1,2,4,8,16,32,64 | tee $OUT/generate.tsv
step "serve"
timeout 120 $B bench serve --device cuda --arch DiT-XL/2 --precision bf16 --requests 32 --steps 50 --max-batch-rows 64 --mixed 48 --short-steps 10 --long-steps 100 | tee $OUT/serve.tsv
step done
