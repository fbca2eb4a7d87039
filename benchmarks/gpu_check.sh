#!/usr/bin/env bash
# The prepared GPU check: one call, at most ~9.5 minutes on one H200 (each batch size compiles anew), JSON lines
# into OUTDIR; run it with a 590 s limit.
#
#   bash benchmarks/gpu_check.sh OUTDIR            # on a machine with CUDA
#   bash benchmarks/gpu_check.sh OUTDIR --dry-run  # the same plumbing on the CPU, tiny model, seconds
#
# 1. the CUDA tests (fast path against fp32 eager, sync-free torch step)                   -> cuda_tests.txt
# 2. paper config at batches 1 and 1024, bf16 + compile + CUDA graphs beside fp32 eager   -> throughput.jsonl
# 3. the env layers' overhead with output="torch" (DreamVectorEnv, DreamSB3VecEnv)     -> env.jsonl
# 4. paper training speed, bf16 + compile                                              -> training.jsonl
# Goals (benchmarks/README.md): >= 20,000 imagined steps/s at batch 1024, >= 3x fp32 eager.
# Each step has its own time limit, so one slow part cannot eat the others' time.
set -uo pipefail
OUT=${1:?usage: bash benchmarks/gpu_check.sh OUTDIR [--dry-run]}
DRY=${2:-}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
source benchmarks/steps.sh  # step NAME SECONDS COMMAND... and $status
: > "$OUT/steps.jsonl"
"$PYTHON" - > "$OUT/machine.json" <<'EOF'
import json, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu, "cpu": platform.processor()}))
EOF
if [ "$DRY" = "--dry-run" ]; then
    step cuda_tests 300 "$PYTHON" -m pytest -q --collect-only -k "cuda or compiled or sync" \
        tests/test_gym_diamond/test_acceleration.py tests/test_gym_diamond/test_vector_env.py tests/test_training/world_model/test_training.py > "$OUT/cuda_tests.txt"
    step throughput 300 "$PYTHON" benchmarks/imagination_throughput.py --model tiny --device cpu --batches 1 2 \
        --compare-eager --no-ale --no-peaks --min-seconds 0.05 > "$OUT/throughput.jsonl"
    step env 300 "$PYTHON" benchmarks/imagination_throughput.py --model tiny --device cpu --batches 2 --env \
        --no-ale --no-peaks --min-seconds 0.05 > "$OUT/env.jsonl"
    step training 300 "$PYTHON" benchmarks/training_speed.py --model tiny --device cpu --batch-size 2 \
        --rew-end-sequence-length 3 --horizon 2 --num-batches-to-preload 2 --min-seconds 0.05 > "$OUT/training.jsonl"
else
    step cuda_tests 100 "$PYTHON" -m pytest -q -rs -k "cuda or sync" \
        tests/test_gym_diamond/test_acceleration.py tests/test_gym_diamond/test_vector_env.py tests/test_training/world_model/test_training.py > "$OUT/cuda_tests.txt"
    step throughput 240 "$PYTHON" benchmarks/imagination_throughput.py --model paper --device cuda \
        --precision bf16 --compile --cuda-graphs --compare-eager --batches 1 1024 --no-ale \
        --min-seconds 2 > "$OUT/throughput.jsonl"
    step env 60 "$PYTHON" benchmarks/imagination_throughput.py --model paper --device cuda --precision bf16 \
        --batches 256 1024 --env --no-ale --min-seconds 2 > "$OUT/env.jsonl"
    step training 150 "$PYTHON" benchmarks/training_speed.py --model paper --device cuda --precision bf16 \
        --compile --min-seconds 5 > "$OUT/training.jsonl"
fi
cat "$OUT/steps.jsonl"
exit $status
