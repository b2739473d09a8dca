#!/usr/bin/env bash
# Installs the pinned npm `openai` SDK into this folder (node_modules, git-ignored) and runs check.mjs against a
# running server. Usage: tools/openai-node/run.sh [http://127.0.0.1:5000]
set -euo pipefail
cd "$(dirname "$0")"
npm install --no-audit --no-fund --silent
node check.mjs "${1:-http://127.0.0.1:5000}"
