#!/usr/bin/env bash
# The CPU table of benchmarks/README.md: every figure in one go, JSON lines into OUT (default bench-cpu/).
#   PYTHON=.venv/bin/python bash benchmarks/cpu_suite.sh [OUT]
# Run it on an otherwise idle machine: the figures are rates. About 45 minutes on 2 cores.
# bf16 is left out: on CPUs without AVX-512 BF16 it is emulated (add --precision bf16 where you have it).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench-cpu}
mkdir -p "$out"
py=${PYTHON:-python}
run() { local name=$1; shift; echo "== $name: $*" >&2; "$py" "$@" | tee "$out/$name.jsonl"; }
lscpu | grep -E "^Model name|^CPU\(s\)" > "$out/cpu.txt" || true
grep -q avx512_bf16 /proc/cpuinfo && echo "AVX-512 BF16: yes" >> "$out/cpu.txt" || echo "AVX-512 BF16: no" >> "$out/cpu.txt"
bench=benchmarks/imagination_throughput.py
run light         $bench --model light --batches 1 16 64 256 --env        # the CPU default: fp32, channels_last
run light-nchw    $bench --model light --batches 16 --no-channels-last --no-ale
run light-2step   $bench --model light --denoising-steps 2 --batches 16 64 --no-ale
run light-1step   $bench --model light --denoising-steps 1 --batches 16 64 --no-ale
run light-1thread $bench --model light --threads 1 --batches 16 --no-ale
run light-compile $bench --model light --compile --batches 16 64 --no-ale
run small         $bench --model small --batches 1 16 64 --no-ale
run paper         $bench --model paper --batches 1 16 64 --no-ale
run paper-nchw    $bench --model paper --batches 16 --no-channels-last --no-ale
run paper-compile $bench --model paper --compile --batches 16 --no-ale
run train-light   benchmarks/training_speed.py --model light
run light-1024    $bench --model light --batches 1024 --no-ale          # about 5 minutes
run train-light-compile benchmarks/training_speed.py --model light --compile   # about 11 minutes
run train-paper   benchmarks/training_speed.py --model paper --min-seconds 20
