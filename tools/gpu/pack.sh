#!/bin/bash
# Packs what a GPU machine without .NET needs into .gpu/ (git-ignored, < 64 MiB): the published server without
# libtorch's CPU libraries (PyTorch's CUDA libtorch on that machine is used through LD_LIBRARY_PATH instead, since
# TorchSharp-cuda-linux is not served here), the .NET runtime, the fixtures and the run scripts.
# Usage: tools/gpu/pack.sh [run.sh|run2.sh]   then run `bash .gpu/<script>` there with .gpu carried.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
rm -rf .gpu /tmp/gpu-app && mkdir -p .gpu/fixtures/dit-tiny .gpu/fixtures/vae-tiny
bash deploy/publish.sh /tmp/gpu-app cpu >/dev/null
(cd /tmp/gpu-app && find . -name 'lib*.so*' ! -name libLibTorchSharp.so -delete && rm -rf ./*.pdb models \
  cs de es fr it ja ko pl pt-BR ru tr zh-Hans zh-Hant && tar cJf - .) > .gpu/app.tar.xz
dotnet_root=$(dirname "$(readlink -f "$(command -v dotnet)")")
(cd "$dotnet_root" && tar cJf - dotnet host shared/Microsoft.NETCore.App shared/Microsoft.AspNetCore.App) > .gpu/dotnet.tar.xz
F=../shared/fixtures
cp $F/cases.json .gpu/fixtures/
cp $F/dit-tiny/{model.json,model.pt,pixels-*.safetensors} .gpu/fixtures/dit-tiny/
cp $F/vae-tiny/{config.json,diffusion_pytorch_model.safetensors} .gpu/fixtures/vae-tiny/
cp tools/gpu/*.sh tools/gpu/*.py .gpu/
du -sh .gpu
