#!/usr/bin/env bash
# Train one game's dream on a machine with one GPU and no network, within 9 minutes of wall time.
#
#   bash benchmarks/gpu_train.sh GAME OUTDIR [--wheels DIR] [--dry-run]
#
#   --wheels DIR  install the project (and what it needs) from the wheels in DIR first, with no index
#   --dry-run     the same plumbing on the CPU with a tiny model and seconds of everything (the test suite runs it)
#
# 1. real play on all the machine's cores: training data, and held-out data collected apart (another seed and,
#    where a scripted player plays, more random actions)
# 2. the world model, recipe cpu (training.world_model --recipe cpu), bf16, Pong's denoiser on 16 frames, for
#    TRAIN_SECONDS of updates (--time-budget: it stops at the next save and exports), judged on held-out episodes
#    every FIDELITY_EVERY
# 3. the checkpoint in float16 (training.ship, under 16 MiB: 1,024 frames of start contexts) with losses.csv,
#    fidelity.csv and steps.jsonl (each step's exit status and seconds) in OUTDIR; the data stays in WORK (default
#    /tmp), not in OUTDIR
# Then gate it where it came back: python -m training.gates --checkpoint OUTDIR/GAME.safetensors --test-data ...
#
# Settings (environment): MODEL (light: the paper model alone is 20 MiB in float16, over what a device call brings
# back), BATCH (32, DIAMOND's: the recipe's learning rate is set for it), TRAIN_SECONDS (330), STEPS (the run's
# total updates, 100000: the time budget stops it first), DATA_STEPS (150000) and APART_STEPS (20000) real steps,
# FIDELITY_EVERY (2000), WORK (/tmp/gpu_train), CONTEXT (frames the denoiser sees: 16 for Pong, whose serve 16 steps
# after a point 4 frames cannot time, benchmarks/README.md; the model preset's 4, DIAMOND's, for other games).
set -uo pipefail
GAME=${1:?usage: bash benchmarks/gpu_train.sh GAME OUTDIR [--wheels DIR] [--dry-run]}
OUT=${2:?usage: bash benchmarks/gpu_train.sh GAME OUTDIR [--wheels DIR] [--dry-run]}
shift 2
WHEELS="" DRY=""
while [ $# -gt 0 ]; do
    case $1 in
        --wheels) WHEELS=${2:?--wheels needs a folder}; shift 2 ;;
        --dry-run) DRY=1; shift ;;
        *) echo "error: unknown option $1" >&2; exit 2 ;;
    esac
done
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-/tmp/gpu_train}/$GAME
CORES=$(nproc)
if [ -n "$DRY" ]; then
    MODEL=tiny BATCH=2 DEVICE=cpu PRECISION=fp32 STEPS=4 TRAIN_SECONDS=600 FIDELITY_EVERY=2 ENVS=2
    DATA_STEPS=400 APART_STEPS=200 SAVE_EVERY=2 EXTRA=(--rew-end-sequence-length 4 --fidelity-samples 2)
else
    MODEL=${MODEL:-light} BATCH=${BATCH:-32} DEVICE=cuda PRECISION=bf16 STEPS=${STEPS:-100000}
    TRAIN_SECONDS=${TRAIN_SECONDS:-330} FIDELITY_EVERY=${FIDELITY_EVERY:-2000} ENVS=$((CORES * 2))
    DATA_STEPS=${DATA_STEPS:-150000} APART_STEPS=${APART_STEPS:-20000} SAVE_EVERY=500 EXTRA=()
fi
POLICY=random
case $GAME in Pong|Breakout) POLICY=follow ;; esac
[ "$GAME" = Pong ] && CONTEXT=${CONTEXT:-16}
CONTEXT_FLAG=()
[ -n "${CONTEXT:-}" ] && CONTEXT_FLAG=(--context-length "$CONTEXT")
START_CONTEXTS=$(( 1024 / ${CONTEXT:-4} ))  # 1,024 frames of start contexts: 12 MiB
source benchmarks/steps.sh  # step NAME SECONDS COMMAND... and $status
: > "$OUT/steps.jsonl"
if [ -n "$WHEELS" ]; then
    step install 120 "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" -e . || exit 1
fi
"$PYTHON" - > "$OUT/machine.json" <<'EOF'
import json, os, platform, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
print(json.dumps({"torch": torch.__version__, "cuda": torch.version.cuda, "gpu": gpu, "cpu": platform.processor(),
                  "cores": os.cpu_count()}))
EOF
rm -rf "$WORK" && mkdir -p "$WORK"
step collect 120 "$PYTHON" -m training.data.collect --game "$GAME" --out "$WORK/data" --steps "$DATA_STEPS" \
    --num-envs "$ENVS" --policy "$POLICY" --seed 0 > "$WORK/collect.log" 2>&1 || exit 1
step collect_apart 60 "$PYTHON" -m training.data.collect --game "$GAME" --out "$WORK/apart" --steps "$APART_STEPS" \
    --num-envs "$ENVS" --policy "$POLICY" --epsilon 0.5 --seed 77 >> "$WORK/collect.log" 2>&1 || exit 1
step world_model $((TRAIN_SECONDS + 120)) "$PYTHON" -m training.world_model --game "$GAME" --data "$WORK/data" \
    --out "$WORK/run" --steps "$STEPS" --model "$MODEL" --batch-size "$BATCH" --device "$DEVICE" \
    --precision "$PRECISION" --recipe cpu --test-fraction 0.1 --fidelity-every "$FIDELITY_EVERY" \
    --save-every "$SAVE_EVERY" --time-budget "$TRAIN_SECONDS" "${CONTEXT_FLAG[@]}" "${EXTRA[@]}" \
    > "$OUT/world_model.log" 2>&1 || exit 1
step ship 60 "$PYTHON" -m training.ship --checkpoint "$WORK/run/world_model.safetensors" \
    --out "$OUT/$GAME.safetensors" --max-mb 16 --start-contexts "$START_CONTEXTS" || exit 1
cp "$WORK/run/losses.csv" "$WORK/run/fidelity.csv" "$OUT/"
cat "$OUT/steps.jsonl"
exit $status
