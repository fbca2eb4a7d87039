#!/bin/bash
# A game's lead in the CPU-budget study (Pong, Breakout), carried from machine to machine.
#
#   bash benchmarks/lead.sh GAME train RUNS    # collect the data if missing, start (or resume) the lead's runs
#   bash benchmarks/lead.sh GAME export RUNS   # write benchmarks/leads/GAME.safetensors from their last saves
#   bash benchmarks/lead.sh GAME judge RUNS [K [START]]  # the closed-loop gate of their last saves, K Euler steps
#                                                       # (3) from START noise (unit, sigma_max; the checkpoint's),
#                                                       # JUDGE_STEPS (the gate's 20,000) steps per policy
#
# A study of thousands of CPU updates outlives the machine it runs on. `train` starts the denoiser from the exported
# lead (benchmarks/leads/GAME.safetensors, `--init-from`: its weights, update count and CPU hours go on) or from
# scratch where there is none, and the reward/termination model from scratch where the lead holds no trained one;
# each run goes to the background at one thread, saving every 50 updates, its output in RUNS/*.log. Run it again to
# resume them after an interruption (a stopped run loses at most its last 50 updates). `export` writes what the runs
# hold now as the new lead (float16, one start context, ~1.5 MB): commit it, and the next machine goes on from it.
# The lead is a training checkpoint, not a gated dream: judge it with python -m training.gates before shipping it.
# RUNS holds one game's runs.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash benchmarks/lead.sh Pong|Breakout train|export|judge RUNS"
GAME=${1:?$usage}
command=${2:?$usage}
RUNS=$(mkdir -p "${3:?give the folder for the runs of GAME, outside the checkout}" && cd "$3" && pwd)
PY=${PYTHON:-.venv/bin/python}
LEAD=${LEAD:-benchmarks/leads/$GAME.safetensors}  # the committed lead (LEAD overrides, for the tests)
DATA=$RUNS/${GAME,,}-data
REW_END_STEPS=3000  # the reward/termination model's updates (a game may ask more)
# bf16 where the CPU has bf16 units (a precision is how fast a run goes, not what it trains: a resumed run may change it)
PRECISION=${PRECISION:-$("$PY" -c "from gym_diamond.acceleration import cpu_bf16_units; print('bf16' if cpu_bf16_units() else 'fp32')")}
# the study's data (reproduced exactly by the seed): the ball follower with a quarter of random actions
COLLECT_ARGS=(--game "$GAME" --steps 150000 --num-envs 8 --policy follow --epsilon 0.25 --seed 0 --out "$DATA")
# what every lead shares: the cpu recipe, a quarter of each batch on the frames after the ball reaches the paddle and
# a twentieth on serves, the pixel weight set around what changed in the context and where something appears (with
# the context's alone Pong's lead drew no serve in 6,250 updates), the context repaired (`--context-erasure 1.0`:
# patches of what stays still faded in the context and kept in the target, so the dream redraws a court or a wall
# of bricks its own frames let fade); trained in bf16 on a CPU with bf16 units (AMX or AVX-512 BF16: the same
# fidelity per update, faster), else in fp32
SHARED_ARGS=(--game "$GAME" --data "$DATA" --steps 20000 --model light --only-denoiser --recipe cpu
  --denoiser-return-oversampling 0.25 --denoiser-serve-oversampling 0.05 --changed-pixel-source both
  --context-erasure 1.0 --test-fraction 0.1 --fidelity-every 250 --save-every 50 --precision "$PRECISION")
REW_END=$RUNS/rew-end  # the reward/termination model's run (a game's recipe may name its own)
REW_END_SHARED=(--game "$GAME" --data "$DATA" --model light --only-rew-end --recipe cpu --reward-oversampling 0.2
  --test-fraction 0.1 --fidelity-every 0 --save-every 100)
case $GAME in
  Pong)
    # 16 context frames (Pong serves 16 steps after a point) and DIAMOND's learning rate 1e-4 since 7,426 updates
    # (the returns, flat at 1e-3 from 2,750, climb slowly again); the context repaired since 13,150. The run folder
    # is named for the recipe: runs of earlier ones (RUNS/denoiser, RUNS/denoiser-serve, RUNS/denoiser-both,
    # RUNS/denoiser-lr1e4) are left as they are
    DENOISER=$RUNS/denoiser-erasure
    DENOISER_ARGS=("${SHARED_ARGS[@]}" --out "$DENOISER" --lr 1e-4 --context-length 16)
    # the reward/termination model reads dream frames as real ones when trained on noisy frames
    REW_END_ARGS=("${REW_END_SHARED[@]}" --out "$REW_END" --termination-oversampling 0.1 --context-length 16
      --rew-end-input-noise 0.1)
    ;;
  Breakout)
    # DIAMOND's 4 context frames and the recipe's learning rate (1e-3); the reward/termination model without input
    # noise, which hid a brick's few pixels (recall 0.29 with noise 0.1, 0.88 without, on data collected apart)
    DENOISER=$RUNS/denoiser
    DENOISER_ARGS=("${SHARED_ARGS[@]}" --out "$DENOISER")
    # 3,000 updates read 0.59 / 0.82 of the held-out bricks (recall / precision) and 0.61 / 0.80 of the lives lost,
    # its losses still falling (reward 0.03 against Pong's 0.0005): the gate asks 0.8 of each. A third of the lives
    # lost show nothing on the terminating transition (ALE counts a life 30 emulator frames after the ball leaves):
    # 0.3 of each batch on sequences that end a life, each holding at least the 10 steps before it, read 0.72 / 0.87
    # at 8,000 against the recipe's 0.1 and no lead-in at 0.67 / 0.92 (both from 6,000), 0.80 / 0.89 at 10,000 (read
    # over whole episodes as dreams read them, 0.86 / 0.86), still climbing. The run folder is named for the recipe:
    # runs of earlier ones (RUNS/rew-end, RUNS/rew-end-control, RUNS/rew-end-leadin) are left as they are
    REW_END=$RUNS/rew-end-leadin-os3
    REW_END_ARGS=("${REW_END_SHARED[@]}" --out "$REW_END" --termination-oversampling 0.3 --termination-lead-in 10)
    REW_END_STEPS=12000
    ;;
  *) echo "no lead recipe for $GAME: Pong or Breakout" >&2; exit 2 ;;
esac

updates_of() {  # the updates of network $2 (denoiser, rew_end) that checkpoint $1 records (0: none)
  "$PY" -c "import sys; from gym_diamond.checkpoint import read_metadata; \
print(read_metadata(sys.argv[1])['provenance'].get(sys.argv[2] + '_steps') or 0)" "$1" "$2"
}

origin_of() {  # how the $2 run (denoiser, rew_end) in folder $1 began, one word a line: --init-from CHECKPOINT,
               # --branch-from RUN
  "$PY" -c "import sys; from training.runtime.run_folder import read_run_settings; \
s = (read_run_settings(sys.argv[1]) or {}).get(sys.argv[2]) or {}; \
[print('--' + k.replace('_', '-'), s[k], sep='\n') for k in ('init_from', 'branch_from') if s.get(k)]" "$1" "$2"
}

lead_rew_end_steps() {
  if [ -f "$LEAD" ]; then updates_of "$LEAD" rew_end; else echo 0; fi
}

rew_end_steps() {  # the reward/termination model's updates: its finished run's here, else the lead's
  if [ -f "$REW_END/world_model.safetensors" ]; then updates_of "$REW_END/world_model.safetensors" rew_end
  else lead_rew_end_steps; fi
}

run_origin() {  # where run folder $1 ($2: denoiser, rew_end) goes on from, one word a line: as it began where it
                # has begun (the lead may have been exported since), else the lead where $3 is "yes", else nothing
  if [ -f "$1/config.json" ]; then origin_of "$1" "$2"
  elif [ "$3" = yes ]; then printf '%s\n' --init-from "$LEAD"; fi
}

running() { pgrep -f -- "--out $1( |$)" >/dev/null; }  # its folder last on the line, or not

start() {  # start a run in the background at one thread unless it is running already
  local name=$1; shift
  if running "$RUNS/$name"; then echo "$name: running"; return; fi
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nohup "$PY" -m training.world_model "$@" >> "$RUNS/$name.log" 2>&1 &
  echo "$name: started (pid $!), output in $RUNS/$name.log"
}

latest_world_model() {  # the runs' last saves as one checkpoint in folder $1 (its path printed)
  "$PY" -m training.world_model.snapshot "$DENOISER" --out "$1/denoiser.safetensors" >&2
  if [ -d "$REW_END" ]; then  # a reward/termination model trained here replaces the lead's
    "$PY" -m training.world_model.snapshot "$REW_END" --out "$1/rew-end.safetensors" >&2
    "$PY" -m training.world_model.combine --denoiser "$1/denoiser.safetensors" --rew-end "$1/rew-end.safetensors" \
      --out "$1/world_model.safetensors" >&2
  else
    mv "$1/denoiser.safetensors" "$1/world_model.safetensors"
  fi
  echo "$1/world_model.safetensors"
}

case $command in
  train)
    # the study's data (reproduced exactly by the seed; a complete dataset is left as it is)
    "$PY" -m training.data.collect "${COLLECT_ARGS[@]}" > "$RUNS/collect.log" 2>&1
    # a run begun here resumes from where it began; a new one goes on from the lead
    mapfile -t origin < <(run_origin "$DENOISER" denoiser "$([ -f "$LEAD" ] && echo yes)")
    start "$(basename "$DENOISER")" "${DENOISER_ARGS[@]}" "${origin[@]}"
    # the reward/termination model until REW_END_STEPS, from the lead's where it holds a trained one
    if [ "$(rew_end_steps)" -lt "$REW_END_STEPS" ]; then
      mapfile -t origin < <(run_origin "$REW_END" rew_end "$([ "$(lead_rew_end_steps)" -gt 0 ] && echo yes)")
      start "$(basename "$REW_END")" "${REW_END_ARGS[@]}" --steps "$REW_END_STEPS" "${origin[@]}"
    fi
    ;;
  export)
    tmp=$(mktemp -d)
    mkdir -p "$(dirname "$LEAD")"
    "$PY" -m training.ship --checkpoint "$(latest_world_model "$tmp")" --out "$LEAD" --start-contexts 1 --max-mb 4
    rm -rf "$tmp"
    ;;
  judge)  # the gate's closed loop: JUDGE_STEPS per policy (its 20,000: 4,000 leave a chance allowance that passed a
          # follower losing 9.5 points per 1,000 steps against the game's 4), 8 dreams, K Euler steps from START
    steps=${4:-3}
    start=${5:-}
    tmp=$(mktemp -d)
    update=$(updates_of "$(latest_world_model "$tmp")" denoiser)
    "$PY" -m training.closed_loop --checkpoint "$tmp/world_model.safetensors" --steps "${JUDGE_STEPS:-20000}" \
      --denoising-steps "$steps" ${start:+--sampler-start "$start"} \
      --out "$RUNS/closed-loop-$update-k$steps${start:+-$start}.json"
    rm -rf "$tmp"
    ;;
  *) echo "unknown command $command: train, export or judge" >&2; exit 2 ;;
esac
