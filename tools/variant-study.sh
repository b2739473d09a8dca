#!/usr/bin/env bash
# The conditioning-variant study of docs/training.md: the paper's four designs (Section 3.2) trained on Fashion-MNIST with the
# same size, data, steps and seed, then each scored by `eval`. Usage: tools/variant-study.sh <out-dir> [steps]
# Build first: dotnet build src/DiTServer.Api -c Release (the script copies the binaries so rebuilding does not
# disturb a running study).
set -euo pipefail
out=${1:?usage: tools/variant-study.sh <out-dir> [steps]}
steps=${2:-2000}
repo=$(cd "$(dirname "$0")/.." && pwd)
bin=$(mktemp -d)
cp -r "$repo/src/DiTServer.Api/bin/Release/net10.0/linux-x64/." "$bin/"
mkdir -p "$out"
for v in adaLN-Zero adaLN cross-attention in-context; do
  start=$(date +%s)
  "$bin/DiTServer.Api" train --data /usr/share/datasets/fashion-mnist --out "$out/$v" --name "variant-$v" --conditioning "$v" \
    --hidden 64 --depth 4 --heads 4 --patch 4 --batch 64 --lr 1e-3 --ema 0.999 --ema-warmup --steps "$steps" \
    --seed 0 --threads 1 --log-every 100 --checkpoint-every 500 \
    --class-names "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot" > "$out/$v.train.log"
  echo "$v train $(( $(date +%s) - start )) s" | tee -a "$out/times.txt"
  "$bin/DiTServer.Api" eval --model "$out/$v" --data /usr/share/datasets/fashion-mnist \
    --classifier "$repo/eval/fashion-mnist-cnn.safetensors" --per-class 50 --steps 50 --cfg 4 --seed 0 --threads 1 > "$out/$v.eval.log"
  grep -E 'generated \(|generated / real|generated vs test' "$out/$v.eval.log"
done
rm -rf "$bin"
