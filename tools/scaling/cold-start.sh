#!/usr/bin/env bash
# Scale-from-zero cost on this machine: process start → first 200 from /health/ready (runtime start, model load,
# warm-up generation), then the first request after ready. Repeats N times; prints one TSV line per run.
#   tools/scaling/cold-start.sh [runs] [extra server args...]      (after dotnet build -c Release)
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-5}; shift || true
dll=src/DiTServer.Api/bin/Release/net10.0/linux-x64/DiTServer.Api.dll
port=5391
printf 'run\tready_s\twarmup_ms\tfirst_request_s\tload\n'
for i in $(seq 1 "$runs"); do
  log=$(mktemp)
  start=$(date +%s.%N)
  dotnet "$dll" --urls "http://127.0.0.1:$port" --Serving:IntraOpThreads=1 "$@" >"$log" 2>&1 &
  pid=$!
  until curl -fs -o /dev/null "http://127.0.0.1:$port/health/ready"; do
    kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.02
  done
  ready=$(date +%s.%N)
  first=$(curl -fs -o /dev/null -w '%{time_total}' -X POST "http://127.0.0.1:$port/v1/images" \
    -H 'Content-Type: application/json' -d '{"class_label": 1, "steps": 20, "cfg_scale": 4, "seed": 1}')
  kill -TERM "$pid"; wait "$pid" || true
  warm=$(grep -o 'Warm-up generation finished in [0-9]* ms' "$log" | grep -o '[0-9]*' || echo NA)
  printf '%s\t%.2f\t%s\t%s\t%s\n' "$i" "$(echo "$ready - $start" | bc)" "$warm" "$first" "$(cut -d' ' -f1 /proc/loadavg)"
  rm -f "$log"
done
