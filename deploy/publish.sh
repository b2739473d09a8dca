#!/usr/bin/env bash
# The one publish command: the Dockerfile and CI both run this, so CI tests what the image ships.
#   deploy/publish.sh <output-dir> [cpu|cuda]
set -euo pipefail
out=${1:?usage: deploy/publish.sh <output-dir> [cpu|cuda]}
backend=${2:-cpu}
case "$backend" in cpu|cuda) ;; *) echo "TORCH_BACKEND must be cpu or cuda, got '$backend'" >&2; exit 2;; esac
cd "$(dirname "$0")/.."
dotnet publish src/DiTServer.Api/DiTServer.Api.csproj -c Release -r linux-x64 --self-contained false \
  -p:TorchBackend="$backend" -o "$out"
