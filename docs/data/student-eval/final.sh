#!/bin/bash
# Stops the distillation (SIGTERM: checkpoint), exports its EMA at the step reached, evaluates 4, 2, 1 steps and a teacher baseline.
set -u
BIN=/tmp/student-bin2/DiTServer.Api.dll
RUN=/work/student-runs/s4
OUT=/work/wt-student/docs/data/student-eval
cd /work/wt-student
pid=$(cat /work/student-runs/s4.pid)
echo "stop: $(date -u); training process CPU time (user+sys) $(ps -o time= -p $pid), wall $(ps -o etime= -p $pid)" >> $OUT/times.txt
kill -TERM $pid
while kill -0 $pid 2>/dev/null; do sleep 2; done
tail -3 /work/student-runs/s4.log
step=$(dotnet $BIN export --checkpoint $RUN --out /tmp/s4-export | sed -n "s/exported step \([0-9]*\).*/\1/p")
echo "checkpoint step $step" >> $OUT/times.txt
# The run's own export, through the verb the user runs: resume to the step reached.
OMP_NUM_THREADS=2 nice -n 19 dotnet $BIN train --out $RUN --resume --steps $step --threads 2 > $OUT/export.log 2>&1
echo "exported: $(date -u)" >> $OUT/times.txt
ev() {
  local name=$1; shift
  echo "eval $name start: $(date -u)" >> $OUT/times.txt
  (time OMP_NUM_THREADS=1 nice -n 19 dotnet $BIN eval --data /usr/share/datasets/fashion-mnist --classifier eval/fashion-mnist-cnn.safetensors \
     --per-class 20 --cfg 4 --threads 1 --seed 0 --seed-sets 3 "$@") > $OUT/$name.log 2>&1
  echo "eval $name end: $(date -u)" >> $OUT/times.txt
}
ev student-4 --model $RUN --sampler dpmpp_2m --order 1 --steps 4
ev student-2 --model $RUN --sampler dpmpp_2m --order 1 --steps 2
ev student-1 --model $RUN --sampler dpmpp_2m --order 1 --steps 1
ev teacher-unipc-2 --model models/dit-fashion-mnist --sampler unipc --steps 2
echo "done: $(date -u)" >> $OUT/times.txt
