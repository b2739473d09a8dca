#!/bin/bash
# Third device run: open-loop Poisson load on DiT-XL/2 (random weights) in bf16, step vs request batching.
exec > >(tee "$OUT/log.txt") 2>&1
R=$PWD; G=$R/.gpu
mkdir -p /tmp/dn /tmp/app && tar xJf $G/dotnet.tar.xz -C /tmp/dn && tar xJf $G/app.tar.xz -C /tmp/app
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export DOTNET_ROOT=/tmp/dn DOTNET_SYSTEM_GLOBALIZATION_INVARIANT=1 DOTNET_NOLOGO=1
export LD_LIBRARY_PATH=$(python3 -c 'import torch,os;print(os.path.dirname(torch.__file__)+"/lib")')
timeout 170 /tmp/dn/dotnet /tmp/app/DiTServer.Api.dll bench load --device cuda --arch DiT-XL/2 --precision bf16 \
  --rates 2,4,8 --requests 30 --steps 10,50,250 --cfg 1,4 --max-batch-rows 64 --csv $OUT/load.csv
echo "exit $?"
