#!/usr/bin/env bash
# The sampler study of docs/samplers.md: the demo model scored by `eval` (same seeds, cfg 4) for each sampler setting.
# Usage: tools/sampler-study.sh run <out-dir> [per-class] [setting…]   (one eval per setting; logs in out-dir)
#        tools/sampler-study.sh sets <out-dir> <per-class> <seed-sets> [setting…]
#            (seed set by seed set: set 0 of every setting, then set 1, …; each set's images saved in out-dir/<setting>/)
#        tools/sampler-study.sh judge <out-dir> <per-class> <seed-sets> [setting…]
#            (one eval per setting over the saved seed sets: per set and pooled, 95% bootstrap intervals; out-dir/<setting>.log)
#        tools/sampler-study.sh csv <out-dir>                          (the table of every finished log, as CSV)
#        tools/sampler-study.sh csv-ci <out-dir>   (the judge logs' per-seed-set and pooled rows with their 95% intervals, as CSV)
# A setting is name|eval flags, e.g. 'dpmpp2m-tu-10|--sampler dpmpp_2m --steps 10', or '@cache ddim 50' (feature caching: see
# below). Without settings: the issue's list.
# Build first: dotnet build src/DiTServer.Api -c Release (the script copies the binaries so rebuilding does not
# disturb a running study).
set -euo pipefail
mode=${1:?usage: tools/sampler-study.sh run|csv <out-dir> …}
out=${2:?usage: tools/sampler-study.sh run|csv <out-dir> …}
repo=$(cd "$(dirname "$0")/.." && pwd)

if [ "$mode" = csv-ci ]; then
  # block_passes: steps whose forward ran the transformer blocks (= model_calls uncached; with cache_interval k the steps
  # 0, k, 2k, … and, for taylor, step 1: FeatureCache.IsFullStep).
  # *_diff: the setting minus its paired reference (eval --paired-with), pooled rows only; empty without one.
  echo "setting,sampler,steps,model_calls,seed_set,images,accuracy,accuracy_low,accuracy_high,fid,fid_low,fid_high,precision,precision_low,precision_high,recall,recall_low,recall_high,cache_interval,cache_mode,block_passes,accuracy_diff,accuracy_diff_low,accuracy_diff_high,fid_diff,fid_diff_low,fid_diff_high,precision_diff,precision_diff_low,precision_diff_high,recall_diff,recall_diff_low,recall_diff_high"
  for log in "$out"/*.log; do
    case $log in *.set[0-9]*.log) continue ;; esac
    grep -q '^# exit 0' "$log" || continue
    name=$(basename "$log" .log)
    awk -v name="$name" '
      /^model / {
        sampler = $0; sub(/^model [^:]*: /, "", sampler); sub(/ .*/, "", sampler)
        match($0, /[0-9]+ steps/); steps = substr($0, RSTART, RLENGTH - 6)
        k = 1; mode = ""
        if (match($0, /cache_interval [0-9]+, [a-z]+/)) { split(substr($0, RSTART + 15, RLENGTH - 15), c, ", "); k = c[1]; mode = c[2] }
        passes = k == 1 ? steps : int((steps + k - 1) / k) + (mode == "taylor" && steps > 1 ? 1 : 0)
      }
      /^\| (accuracy|FID|precision|recall) difference \|/ {
        line = $0; gsub(/[\[\]]/, "", line); gsub(/, /, " ", line); split(line, f, "|"); split(f[3], v, " ")
        diff = diff "," v[1] "," v[2] "," v[3]
      }
      /^\| (seed [0-9]+|pooled) \|/ {
        line = $0; gsub(/[\[\]]/, "", line); gsub(/, /, " ", line)
        n = split(line, f, "|")
        set = f[2]; gsub(/^ +| +$/, "", set); sub(/^seed /, "", set)
        images = f[3]; gsub(/ /, "", images)
        out = ""
        for (i = 4; i <= 7; i++) { split(f[i], v, " "); out = out "," v[1] "," v[2] "," v[3] }
        rows[++nrows] = sprintf("%s,%s,%s,%s,%s,%s%s,%s,%s,%s", name, sampler, steps, steps, set, images, out, k, mode, passes)
        pooled[nrows] = set == "pooled"
      }
      # One seed set: no per-set table, the metric table is the only one.
      /^\| classifier accuracy, generated \(/ { match($0, /\([0-9]+ samples/); single_n = substr($0, RSTART + 1, RLENGTH - 9) }
      /^\| (classifier accuracy, generated|FID \(CNN features\), generated|precision \(k|recall \(k)/ {
        line = $0; gsub(/[\[\]]/, "", line); gsub(/, /, " ", line); split(line, f, "|"); split(f[3], v, " ")
        single = single "," v[1] "," v[2] "," v[3]
      }
      /^model / { match($0, /seed [0-9]+/); single_seed = substr($0, RSTART + 5, RLENGTH - 5) }
      END {
        if (nrows == 0 && single != "") {
          rows[++nrows] = sprintf("%s,%s,%s,%s,%s,%s%s,%s,%s,%s", name, sampler, steps, steps, single_seed, single_n, single, k, mode, passes)
          pooled[nrows] = 1
        }
        # The difference lines belong to the pooled row (one seed set: its only row).
        empty = ",,,,,,,,,,,,"
        if (diff == "") diff = empty; else sub(/^,/, "", diff)
        for (i = 1; i <= nrows; i++) print rows[i] "," (pooled[i] ? diff : empty)
      }
    ' "$log"
  done
  exit 0
fi

if [ "$mode" = csv ]; then
  echo "setting,sampler,spacing,steps,model_calls,extra,per_class,accuracy,ratio,fid,fid_floor,generate_s,images_per_s,finished_utc"
  for log in "$out"/*.log; do
    grep -q '^# exit 0' "$log" || continue
    name=$(basename "$log" .log)
    awk -v name="$name" -F'|' '
      /^model / {
        line = $0
        sampler = line; sub(/^model [^:]*: /, "", sampler); sub(/ .*/, "", sampler)
        spacing = ""; if (match(line, /(time_uniform|logsnr|time_quadratic)/)) spacing = substr(line, RSTART, RLENGTH)
        match(line, /[0-9]+ steps/); steps = substr(line, RSTART, RLENGTH - 6)
        match(line, /[0-9]+ samples per class/); per = substr(line, RSTART, RLENGTH - 18)
        match(line, /\([0-9]+ s to generate/); secs = substr(line, RSTART + 1, RLENGTH - 15)
        match(line, /[0-9.]+ images\/s/); ips = substr(line, RSTART, RLENGTH - 9)
        extra = ""
        if (match(line, /guidance interval \[[0-9., ]+\]/)) { extra = substr(line, RSTART + 18, RLENGTH - 18); gsub(/[\[\] ]/, "", extra); sub(/,/, "-", extra); extra = "interval " extra }
        if (line ~ /dynamic thresholding/) extra = (extra == "" ? "" : extra " + ") "thresholding"
      }
      /classifier accuracy, generated/ { gsub(/ /, "", $3); acc = $3 }
      /generated \/ real/ { gsub(/ /, "", $3); ratio = $3 }
      /FID \(CNN features\), generated vs test/ { gsub(/ /, "", $3); fid = $3 }
      /real train images vs test/ { gsub(/ /, "", $3); floor = $3 }
      /^# exit 0 finished:/ { fin = $0; sub(/^# exit 0 finished: /, "", fin); sub(/ UTC$/, "", fin) }
      END { printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s\n", name, sampler, spacing, steps, steps, extra, per, acc, ratio, fid, floor, secs, ips, fin }
    ' "$log"
  done
  exit 0
fi

per=${3:-100}
shift 3 || true
sets=1
if [ "$mode" = sets ] || [ "$mode" = judge ]; then sets=${1:?seed-sets missing}; shift; fi
settings=()
for spec in "$@"; do
  # '@cache <sampler> <steps>': that sampler uncached (explicitly, whatever the model's default_cache says) and at
  # cache_interval 3, 5, 4, 2 in both modes, in that order (issue 20's goal interval first, the costliest last).
  if [[ $spec == @cache\ * ]]; then
    # Judged, each cached setting is also compared with the uncached one image for image (eval --paired-with).
    read -r _ s n <<< "$spec"
    settings+=("$s-$n|--sampler $s --steps $n --cache-interval 1")
    paired=""; [ "$mode" = judge ] && paired=" --paired-with $out/$s-$n"
    for k in 3 5 4 2; do
      for m in reuse taylor; do settings+=("$s-$n-c$k-$m|--sampler $s --steps $n --cache-interval $k --cache-mode $m$paired"); done
    done
  else settings+=("$spec"); fi
done
if [ ${#settings[@]} -eq 0 ]; then
  # ddim-50 uncached explicitly: the demo model's default_cache would cache it.
  settings=("ddpm-250|--sampler ddpm --steps 250" "ddpm-50|--sampler ddpm --steps 50" "ddim-50|--sampler ddim --steps 50 --cache-interval 1"
    "ddim-10|--sampler ddim --steps 10")
  for n in 5 8 10 15 20; do
    settings+=("dpmpp2m-tu-$n|--sampler dpmpp_2m --steps $n" "dpmpp2m-logsnr-$n|--sampler dpmpp_2m --steps $n --spacing logsnr")
  done
  for n in 5 8 10 15; do settings+=("unipc-$n|--sampler unipc --steps $n"); done
fi
bin=$(mktemp -d)
cp -r "$repo/src/DiTServer.Api/bin/Release/net10.0/linux-x64/." "$bin/"
mkdir -p "$out"
cd "$repo"
common="--model models/dit-fashion-mnist --data /usr/share/datasets/fashion-mnist --classifier eval/fashion-mnist-cnn.safetensors --per-class $per --cfg 4 --threads 1"
# One eval; its command, start and exit code in the log.
run_eval() {
  local log=$1 err=$2; shift 2
  { echo "# command: dotnet run --project src/DiTServer.Api -c Release -- eval $*"; echo "# started: $(date -u '+%Y-%m-%d %H:%M:%S') UTC"; } > "$log"
  # CPU seconds as well as wall time: on a shared machine the core's rate (images per CPU second) is what transfers.
  local timed=(); [ -x /usr/bin/time ] && timed=(/usr/bin/time -f '# cpu: %U s user, %S s system, %e s wall' -a -o "$log")
  local code=0; "${timed[@]}" "$bin/DiTServer.Api" eval "$@" >> "$log" 2> "$err" || code=$?
  echo "# exit $code finished: $(date -u '+%Y-%m-%d %H:%M:%S') UTC" >> "$log"
}
if [ "$mode" = sets ] || [ "$mode" = judge ]; then
  for ((j = 0; j < sets; j++)); do
    [ "$mode" = judge ] && [ $j -gt 0 ] && break
    for spec in "${settings[@]}"; do
      name=${spec%%|*}; flags=${spec#*|}
      if [ "$mode" = sets ]; then
        # Seed set j starts at seed 1000000·j (GeneratedSampleEvaluation.SeedSetStride), as `eval --seed-sets` numbers them.
        # A set already written (an interrupted study run again) is kept.
        [ -f "$out/$name/seed-$((1000000 * j))-labels-idx1-ubyte" ] && continue
        # shellcheck disable=SC2086
        run_eval "$out/$name.set$j.log" "$out/$name.set$j.err" $common --seed $((1000000 * j)) --save-samples "$out/$name" --sample-only $flags
      else
        # shellcheck disable=SC2086
        run_eval "$out/$name.log" "$out/$name.err" $common --seed 0 --seed-sets "$sets" --samples "$out/$name" $flags
      fi
    done
  done
  rm -rf "$bin"
  exit 0
fi
for spec in "${settings[@]}"; do
  name=${spec%%|*}; flags=${spec#*|}
  args="--model models/dit-fashion-mnist --data /usr/share/datasets/fashion-mnist --classifier eval/fashion-mnist-cnn.safetensors --per-class $per --cfg 4 --seed 0 --threads 1 $flags"
  { echo "# command: dotnet run --project src/DiTServer.Api -c Release -- eval $args"; echo "# started: $(date -u '+%Y-%m-%d %H:%M:%S') UTC"; } > "$out/$name.log"
  # shellcheck disable=SC2086
  code=0; "$bin/DiTServer.Api" eval $args >> "$out/$name.log" 2> "$out/$name.err" || code=$?
  echo "# exit $code finished: $(date -u '+%Y-%m-%d %H:%M:%S') UTC" >> "$out/$name.log"
done
rm -rf "$bin"
