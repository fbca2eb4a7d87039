"""Imagined env-steps per second of WorldModel.imagine_step, one JSON line per batch size.

    python benchmarks/imagination_throughput.py                  # paper config, batches 1, 16, 64
    python benchmarks/imagination_throughput.py --config small   # small_world_model_config
    python benchmarks/imagination_throughput.py --device cuda    # adds batches 256 and 1024
    python benchmarks/imagination_throughput.py --env            # also DreamCore and DreamVectorEnv steps

gflop_per_step counts one environment's imagined step (3 U-Net passes and the reward/termination
model) with torch's FlopCounterMode; peak_fraction compares the achieved FLOP rate with a plain
matmul's on the same device and dtype, measured here first.

``--env`` adds, per batch size, lines for ``DreamCore.step`` and ``DreamVectorEnv.step`` with numpy
and torch outputs, with ``overhead`` relative to the bare ``imagine_step``: the cost of the history
bookkeeping, restarts and the gymnasium layer. The untrained model ends about half its episodes each
step, so restarts (LSTM burn-in on a start context) are far more frequent than in a trained dream.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from gym_diamond import (
    BatchedGenerator,
    DreamVectorEnv,
    StartBank,
    WorldModel,
    WorldModelConfig,
    save_checkpoint,
    small_world_model_config,
)

CONFIGS = {"paper": lambda: WorldModelConfig(num_actions=18), "small": lambda: small_world_model_config(18)}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def inputs(model: WorldModel, n: int, device: torch.device):
    L = model.config.denoiser.context_length
    frames = torch.rand(n, L, *model.frame_shape, device=device) * 2 - 1
    actions = torch.randint(0, model.config.num_actions, (n, L), device=device)
    return frames, actions


def gflop_per_step(model: WorldModel, device: torch.device, dtype: torch.dtype) -> float:
    frames, actions = inputs(model, 1, device)
    state = model.burn_in(frames, actions)
    counter = FlopCounterMode(display=False)
    with counter, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model.imagine_step(frames, actions, state, BatchedGenerator([0], device=device))
    return counter.get_total_flops() / 1e9


def time_batch(model: WorldModel, n: int, device: torch.device, dtype: torch.dtype, min_seconds: float) -> float:
    frames, actions = inputs(model, n, device)
    state = model.burn_in(frames, actions)
    generator = BatchedGenerator(range(n), device=device)
    with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
        model.imagine_step(frames, actions, state, generator)  # warm-up
        sync(device)
        steps, start = 0, time.perf_counter()
        while steps < 3 or time.perf_counter() - start < min_seconds:
            state = model.imagine_step(frames, actions, state, generator).state
            steps += 1
        sync(device)
    return (time.perf_counter() - start) / steps


def time_env(env: DreamVectorEnv, min_seconds: float) -> tuple[float, float]:
    """Seconds per DreamVectorEnv.step, and the fraction of environments that restarted per step."""
    n, torch_out = env.num_envs, env.output == "torch"
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, env.core.num_actions, n) for _ in range(8)]
    if torch_out:
        actions = [torch.as_tensor(a, device=env.device) for a in actions]
    env.step(actions[0])
    sync(env.device)
    steps, restarts, start = 0, 0.0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < min_seconds:
        _, _, term, trunc, _ = env.step(actions[steps % 8])
        restarts = restarts + (term | trunc).sum()
        steps += 1
    sync(env.device)
    seconds = (time.perf_counter() - start) / steps
    return seconds, float(restarts) / (steps * n)


def env_lines(model: WorldModel, n: int, device: torch.device, bare_seconds: float, min_seconds: float,
              checkpoint: Path) -> list[dict]:
    lines = []
    for output in ("numpy", "torch"):
        env = DreamVectorEnv(n, checkpoint=checkpoint, device=device, output=output, max_episode_steps=1000)
        seconds, restarts = time_env(env, min_seconds)
        lines.append({"what": f"DreamVectorEnv.step[{output}]", "batch": n, "env_steps_per_s": round(n / seconds, 2),
                      "ms_per_step": round(1000 * seconds, 2), "restart_fraction": round(restarts, 3),
                      "overhead": round(seconds / bare_seconds - 1, 3)})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--batches", type=int, nargs="*", help="default: 1 16 64 (+ 256 1024 on a GPU)")
    parser.add_argument("--env", action="store_true", help="also time DreamVectorEnv.step (numpy, torch)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each batch size at least this long")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), DTYPES[args.dtype]
    batches = args.batches or ([1, 16, 64, 256, 1024] if device.type == "cuda" else [1, 16, 64])
    torch.manual_seed(0)
    model = WorldModel(CONFIGS[args.config]()).to(device).eval()
    gflop = gflop_per_step(model, device, dtype)
    peak = matmul_peak_gflops(device, dtype)
    checkpoint = None
    if args.env:
        folder = Path(tempfile.mkdtemp())
        L, size = model.config.denoiser.context_length, model.config.denoiser.image_size
        rng = np.random.default_rng(0)
        bank = StartBank(rng.integers(0, 256, (64, L, size, size, 3), dtype=np.uint8),
                         rng.integers(0, model.config.num_actions, (64, L)))
        checkpoint = save_checkpoint(folder / "bench.safetensors", model.cpu(), game="Pong",
                                     action_meanings=[str(i) for i in range(model.config.num_actions)],
                                     start_bank=bank)
        model.to(device)
    for n in batches:
        seconds = time_batch(model, n, device, dtype, args.min_seconds)
        print(json.dumps({"what": "WorldModel.imagine_step",
            "config": args.config, "device": str(device), "threads": torch.get_num_threads(), "dtype": args.dtype,
            "batch": n, "env_steps_per_s": round(n / seconds, 2), "ms_per_step": round(1000 * seconds, 2),
            "gflop_per_step": round(gflop, 3), "achieved_gflops": round(gflop * n / seconds, 1),
            "matmul_peak_gflops": round(peak, 1), "peak_fraction": round(gflop * n / seconds / peak, 3),
        }), flush=True)
        if args.env:
            for line in env_lines(model, n, device, seconds, args.min_seconds, checkpoint):
                print(json.dumps({"config": args.config, "device": str(device), **line}), flush=True)


if __name__ == "__main__":
    main()
