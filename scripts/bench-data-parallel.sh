#!/usr/bin/env bash
# Data-parallel scaling and ZeRO memory of `kiln train` on this machine (docs/distributed.md, "Measured").
# Usage: scripts/bench-data-parallel.sh [runs] [all]   (needs Open MPI: scripts/install-mpi.sh; builds Release first)
# With "all", tensor- and pipeline-parallel modes (tp 2; pp 2 with 4 micro-batches, GPipe and 1F1B) are measured too.
# For each mode it trains a 4-layer × 256 llama for 8 steps (global batch 16 × 64 tokens, one thread per rank) and
# prints rank 0's median tokens/s over steps 2-8 (step 1 carries JIT), then the median over the runs, and the share of
# step time rank 0 waited in communication, and the CPU seconds (user + system) the whole job used (ranks unbound:
# --bind-to none measured 10-20 % faster than Open MPI's core binding on this shared machine). Then ZeRO-3 vs
# plain DP model-state memory at 4 ranks.
set -euo pipefail
runs=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
dotnet build "$root/src/Kiln.Cli/Kiln.Cli.csproj" -c Release -v q -nologo >/dev/null
kiln="$root/src/Kiln.Cli/bin/Release/net10.0/kiln.dll"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 TERM=dumb
for i in $(seq 400); do echo "to be or not to be, that is the question: whether 'tis nobler in the mind to suffer"; done > "$work/in.txt"
dotnet "$kiln" data prepare --tokenizer char "$work/in.txt" -o "$work/train.bin" "$work/val.bin" >/dev/null
model=(--layers 4 --dim 256 --heads 8 --data "$work/train.bin" --batch 16 --seq 64 --steps 8 --save-every 1000 -t 1)
median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
# one run of a mode: appends "tokens/s communication% cpu-seconds" to $work/<name>
run_once() { # name, ranks, extra flags…
  local name=$1 ranks=$2; shift 2
  rm -rf "$work/out"
  if [ "$ranks" = 1 ]; then
    /usr/bin/time -f "%U %S" -o "$work/cpu" dotnet "$kiln" train "${model[@]}" --out "$work/out" "$@" 2>"$work/log" >/dev/null
  else
    /usr/bin/time -f "%U %S" -o "$work/cpu" mpirun --oversubscribe --bind-to none -np "$ranks" dotnet "$kiln" train "${model[@]}" --out "$work/out" "$@" 2>"$work/log" >/dev/null
  fi
  echo "$(tail -n +3 "$work/out/metrics.csv" | cut -d, -f6 | median) $(grep -o 'in steps ([0-9.]*%)' "$work/log" | grep -o '[0-9.]*' || echo 0) $(awk '{print $1 + $2}' "$work/cpu")" >> "$work/$name"
}
modes=("single 1" "dp 2 --dp 2" "zero1 2 --dp 2 --zero 1" "zero2 2 --dp 2 --zero 2" "zero3 2 --dp 2 --zero 3")
if [ "${2:-}" = all ]; then
  modes+=("tp 2 --tp 2" "gpipe 2 --pp 2 --micro-batches 4 --schedule gpipe" "1f1b 2 --pp 2 --micro-batches 4 --schedule 1f1b")
fi
# modes alternate within each round, so a change of load spreads over all of them
for r in $(seq "$runs"); do
  for m in "${modes[@]}"; do run_once $m; done
done
for m in "${modes[@]}"; do
  set -- $m
  printf '%-7s ranks %d  tokens/s %6.0f  (runs: %s)  communication %5.1f%%  job CPU %5.2f s\n' "$1" "$2" \
    "$(cut -d' ' -f1 "$work/$1" | median)" "$(cut -d' ' -f1 "$work/$1" | tr '\n' ' ')" "$(cut -d' ' -f2 "$work/$1" | median)" "$(cut -d' ' -f3 "$work/$1" | median)"
done
for zero in 0 3; do
  rm -rf "$work/out"
  mpirun --oversubscribe -np 4 dotnet "$kiln" train "${model[@]}" --stop-at 1 --out "$work/out" --dp 4 --zero $zero 2>&1 >/dev/null | grep 'kiln: memory' | sed "s/^/4 ranks zero $zero: /"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
