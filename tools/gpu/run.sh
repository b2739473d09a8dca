#!/bin/bash
# One device run: CUDA path checks and GPU numbers for issue 6. Output: $OUT/log.txt (+ tsv files).
exec > >(tee "$OUT/log.txt") 2>&1
R=$PWD; G=$R/.gpu; S=$(date +%s)
step() { echo; echo "=== $* ($(( $(date +%s) - S )) s)"; }
mkdir -p /tmp/dn /tmp/app && tar xJf $G/dotnet.tar.xz -C /tmp/dn && tar xJf $G/app.tar.xz -C /tmp/app
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc
TL=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
python3 -c 'import torch;print("python torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
export DOTNET_ROOT=/tmp/dn DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_NOLOGO=1 LD_LIBRARY_PATH=$TL
step "symbols libLibTorchSharp needs that torch's libs lack"
nm -D --undefined-only /tmp/app/libLibTorchSharp.so | awk '{print $2}' | grep -v '@' | sort -u > /tmp/undef
for l in $TL/libtorch.so $TL/libtorch_cpu.so $TL/libc10.so $TL/libtorch_cuda.so $TL/libc10_cuda.so; do nm -D --defined-only $l 2>/dev/null | awk '{print $3}'; done | sed 's/@.*//' | sort -u > /tmp/def
comm -23 /tmp/undef /tmp/def > /tmp/missing; echo "missing: $(wc -l < /tmp/missing)"; head -20 /tmp/missing | c++filt
B="/tmp/dn/dotnet /tmp/app/DiTServer.Api.dll"
step sgemm
for p in fp32 tf32 bf16; do timeout 60 $B bench sgemm --device cuda --m 8192 --k 8192 --n 8192 --iters 10 --precision $p; done
step "parity: fixture cases on cuda"
F=$G/fixtures/dit-tiny
for p in fp32 tf32 bf16; do
 timeout 40 $B sample --device cuda --precision $p --model $F --labels 1,7 --steps 10 --cfg 4 --seed 1234 --out /tmp/par/$p-0 >/dev/null
 timeout 40 $B sample --device cuda --precision $p --model $F --labels 3 --steps 250 --cfg 4 --seed 0 --out /tmp/par/$p-1 >/dev/null
 timeout 40 $B sample --device cuda --precision $p --model $F --labels 1,7 --steps 10 --cfg 4 --seed 1234 --sampler ddim --out /tmp/par/$p-2 >/dev/null
 timeout 40 $B sample --device cuda --precision $p --model $F --labels 5 --steps 10 --cfg 1 --seed 7 --out /tmp/par/$p-3
done
python3 $G/parity.py $G/fixtures /tmp/par
step "demo model: cuda vs cpu"
timeout 60 $B sample --device cuda --model $R/models/dit-fashion-mnist --labels 0,1,7,9 --steps 50 --seed 0 --out /tmp/demo-cuda
timeout 60 $B sample --device cpu --model $R/models/dit-fashion-mnist --labels 0,1,7,9 --steps 50 --seed 0 --out /tmp/demo-cpu
python3 -c "
import numpy as np; from PIL import Image
d=[np.abs(np.asarray(Image.open(f'/tmp/demo-cuda/{i}.png'),int)-np.asarray(Image.open(f'/tmp/demo-cpu/{i}.png'),int)) for i in range(4)]
print('demo cuda vs cpu: max |dpixel|', max(x.max() for x in d), 'mean', np.mean([x.mean() for x in d]))"
cp /tmp/demo-cuda/0.png $OUT/demo-cuda-0.png
step "forward XL/2 256 (rows = batch)"
for p in fp32 tf32 bf16; do timeout 90 $B bench forward --device cuda --precision $p --arch DiT-XL/2 --batch 1,2,8,16,32,64,128 --warmup 2 --iters 5; done | tee $OUT/forward.tsv
step "pytorch eager reference"
timeout 90 python3 $G/pytorch_dit.py fp32,tf32,bf16 1,2,8,16,32,64,128 | tee $OUT/pytorch.tsv
step "generate: XL/2 256, 50 DDIM, cfg 4, + SD VAE decode"
timeout 220 $B bench generate --device cuda --precision bf16,tf32,fp32 --batch 1,2,4,8,16,32,64 | tee $OUT/generate.tsv
step "serve: engine vs raw loop, XL/2 bf16"
timeout 130 $B bench serve --device cuda --arch DiT-XL/2 --precision bf16 --requests 32 --steps 50 --max-batch-rows 64 --mixed 24 --short-steps 10 --long-steps 100 | tee $OUT/serve.tsv
step "HTTP server on cuda (demo model)"
DiT__Model=$R/models/dit-fashion-mnist DiT__Device=cuda ASPNETCORE_URLS=http://127.0.0.1:5099 $B > /tmp/server.log 2>&1 & SP=$!
for i in $(seq 60); do curl -sf http://127.0.0.1:5099/health/ready >/dev/null && break; sleep 1; done
curl -s -o $OUT/http-sneaker.png -w "POST /v1/images: %{http_code} %{time_total}s\n" -X POST http://127.0.0.1:5099/v1/images -H 'Content-Type: application/json' -d '{"class_label":"Sneaker","num_images":4,"seed":1}'
kill -TERM $SP; wait $SP; echo "server exit $?"; grep -i "serving\|error\|fail" /tmp/server.log | head -5
step done
