"""Imagined env-steps per second of WorldModel.imagine_step, one JSON line per batch size.

    python benchmarks/imagination_throughput.py                  # paper config, batches 1, 16, 64
    python benchmarks/imagination_throughput.py --model light   # light_world_model_config (also small, tiny)
    python benchmarks/imagination_throughput.py --device cuda --precision bf16 --compile --cuda-graphs \
        --compare-eager                                          # batches 1 to 1024, and fp32 eager beside
    python benchmarks/imagination_throughput.py --env            # also DreamVectorEnv and SB3 VecEnv steps

gflop_per_step counts one environment's imagined step (the U-Net passes and the reward/termination
model) with torch's FlopCounterMode. peak_fraction compares the achieved FLOP rate with the device's
best measured rate on plain 3x3 convolutions of the U-Net's shapes (``CONV_SHAPES``) in the same
dtype and either memory layout, measured here first (matmul_peak_gflops is printed too).
ale_steps_per_s is the real game's rate (ale-py's native vector env, one game, DIAMOND's
preprocessing) in the same run, and dream_over_ale the ratio: what a dream costs against the thing
it replaces. peak_memory_mb is CUDA's max allocated memory, or on CPU the process's peak resident
size. ``--compare-eager`` adds, per batch, the same model in fp32 eager and
``speedup_over_fp32_eager``.

``--env`` adds, per batch size, lines for ``DreamCore.step`` and ``DreamVectorEnv.step`` with numpy
and torch outputs, with ``overhead`` relative to the bare ``imagine_step``: the cost of the history
bookkeeping, restarts and the gymnasium layer. The untrained model ends about half its episodes each
step, so restarts (LSTM burn-in on a start context) are far more frequent than in a trained dream.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from gym_diamond import BatchedGenerator, DreamVectorEnv, StartBank, WorldModel, WorldModelConfig, save_checkpoint
from gym_diamond.acceleration import Acceleration
from gym_diamond.checkpoint import read_metadata
from gym_diamond.config import MODEL_SIZES
from gym_diamond.envs.sb3 import DreamSB3VecEnv

CONFIGS = {name: functools.partial(size, 18) for name, size in MODEL_SIZES.items()}  # Atari's full action set


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


CONV_SHAPES = [(1, 64, 64), (32, 64, 64), (8, 128, 32), (16, 256, 16)]  # (batch, channels, side)


def conv_peak_gflops(device: torch.device, dtype: torch.dtype, repeats: int = 10) -> float:
    """The device's best rate on plain 3x3 convolutions of U-Net shapes, in either memory layout: the
    ceiling the dream is held to."""
    best = 0.0
    for (n, c, side), layout in itertools.product(CONV_SHAPES, (torch.contiguous_format, torch.channels_last)):
        x = torch.randn(n, c, side, side, device=device, dtype=dtype).to(memory_format=layout)
        conv = torch.nn.Conv2d(c, c, 3, padding=1).to(device=device, dtype=dtype, memory_format=layout)
        with torch.no_grad():
            conv(x)
            sync(device)
            start = time.perf_counter()
            for _ in range(repeats):
                conv(x)
            sync(device)
        best = max(best, 2 * c * c * 9 * side * side * n * repeats / (time.perf_counter() - start) / 1e9)
    return best


def ale_steps_per_s(seconds: float = 2.0) -> float:
    """The real game's agent steps per second (Pong, one game, DIAMOND's preprocessing)."""
    from training.data.vector_atari import make_vector_atari

    env = make_vector_atari("Pong", 1, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        env.step(rng.integers(0, env.single_action_space.n, 1))
        steps += 1
    env.close()
    return steps / (time.perf_counter() - start)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def inputs(model: WorldModel, n: int, device: torch.device):
    L = model.config.denoiser.context_length
    frames = torch.rand(n, L, *model.frame_shape, device=device) * 2 - 1
    actions = torch.randint(0, model.config.num_actions, (n, L), device=device)
    return frames, actions


def gflop_per_step(model: WorldModel, device: torch.device) -> float:
    frames, actions = inputs(model, 1, device)
    state = model.burn_in(frames, actions)
    counter = FlopCounterMode(display=False)
    with counter:
        model.imagine_step(frames, actions, state, BatchedGenerator([0], device=device))
    return counter.get_total_flops() / 1e9


def time_batch(model: WorldModel, n: int, device: torch.device, min_seconds: float) -> float:
    frames, actions = inputs(model, n, device)
    state = model.burn_in(frames, actions)
    generator = BatchedGenerator(range(n), device=device)
    for _ in range(3 if model.acceleration.compile else 1):  # warm-up (compilation, graph capture)
        state = model.imagine_step(frames, actions, state, generator).state
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


def time_sb3(env: DreamSB3VecEnv, min_seconds: float) -> float:
    """Seconds per DreamSB3VecEnv.step (numpy actions in, numpy observations out)."""
    env.seed(0)
    env.reset()
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, env.action_space.n, env.num_envs) for _ in range(8)]
    env.step(actions[0])
    steps, start = 0, time.perf_counter()
    while steps < 3 or time.perf_counter() - start < min_seconds:
        env.step(actions[steps % 8])
        steps += 1
    sync(env.device)
    return (time.perf_counter() - start) / steps


def env_lines(n: int, device: torch.device, bare_seconds: float, min_seconds: float, checkpoint: Path,
              options: dict) -> list[dict]:
    """The gymnasium and SB3 layers' cost over the bare imagined step, same model and switches."""
    lines = []
    for output in ("numpy", "torch"):
        env = DreamVectorEnv(n, checkpoint=checkpoint, device=device, output=output, max_episode_steps=1000,
                             **options)
        seconds, restarts = time_env(env, min_seconds)
        lines.append({"what": f"DreamVectorEnv.step[{output}]", "batch": n, "env_steps_per_s": round(n / seconds, 2),
                      "ms_per_step": round(1000 * seconds, 2), "restart_fraction": round(restarts, 3),
                      "overhead": round(seconds / bare_seconds - 1, 3)})
    sb3 = DreamSB3VecEnv.from_checkpoint(checkpoint, n, device=device, **options)
    seconds = time_sb3(sb3, min_seconds)
    lines.append({"what": "DreamSB3VecEnv.step", "batch": n, "env_steps_per_s": round(n / seconds, 2),
                  "ms_per_step": round(1000 * seconds, 2), "overhead": round(seconds / bare_seconds - 1, 3)})
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="paper")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC layout (default: the device's, Acceleration.default_for)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the imagined step")
    parser.add_argument("--cuda-graphs", action="store_true", help="with --compile: replay as CUDA graphs")
    parser.add_argument("--denoising-steps", type=int, default=None, help="default: the config's (3)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--batches", type=int, nargs="*", help="default: 1 16 64 (1 to 1024 on a GPU)")
    parser.add_argument("--compare-eager", action="store_true", help="also time fp32 eager, report the speedup")
    parser.add_argument("--env", action="store_true", help="also time DreamVectorEnv and DreamSB3VecEnv steps")
    parser.add_argument("--env-checkpoint", help="with --env: time the env layers on this trained checkpoint (same "
                        "config) instead of random weights, whose dreams end about every other step")
    parser.add_argument("--no-ale", action="store_true", help="skip timing the real game")
    parser.add_argument("--no-peaks", action="store_true",
                        help="skip measuring the device's conv and matmul peaks (seconds on a CPU; for dry runs)")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each batch size at least this long")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.channels_last is None:
        args.channels_last = Acceleration.default_for(device).channels_last
    acceleration = Acceleration(precision=args.precision, channels_last=args.channels_last, compile=args.compile,
                                cuda_graphs=args.cuda_graphs)
    batches = args.batches or ([1, 16, 64, 256, 1024] if device.type == "cuda" else [1, 16, 64])
    torch.manual_seed(0)
    config = CONFIGS[args.model]()
    if args.denoising_steps:
        config = config.with_denoising_steps(args.denoising_steps)
    model = WorldModel(config).to(device).eval()
    gflop = gflop_per_step(model, device)
    conv_peak = None if args.no_peaks else conv_peak_gflops(device, acceleration.dtype)
    matmul_peak = None if args.no_peaks else matmul_peak_gflops(device, acceleration.dtype)
    ale = None if args.no_ale else ale_steps_per_s()
    eager = WorldModel(config).to(device).eval() if args.compare_eager else None
    if eager is not None:
        eager.load_state_dict(model.state_dict())
    model.accelerate(acceleration)
    checkpoint = None
    if args.env and args.env_checkpoint:
        checkpoint = Path(args.env_checkpoint)
        trained = WorldModelConfig.from_dict(read_metadata(checkpoint)["config"])  # the envs load the weights
        if (trained.denoiser, trained.rew_end) != (config.denoiser, config.rew_end):
            parser.error(f"--env-checkpoint {checkpoint} is not of the {args.model} config")
    elif args.env:
        folder = Path(tempfile.mkdtemp())
        L, size = config.denoiser.context_length, config.denoiser.image_size
        rng = np.random.default_rng(0)
        bank = StartBank(rng.integers(0, 256, (64, L, size, size, 3), dtype=np.uint8),
                         rng.integers(0, config.num_actions, (64, L)))
        checkpoint = save_checkpoint(folder / "bench.safetensors", WorldModel(config).eval(), game="Pong",
                                     action_meanings=[str(i) for i in range(config.num_actions)], start_bank=bank)
    for n in batches:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = time_batch(model, n, device, args.min_seconds)
        line = {"what": "WorldModel.imagine_step", "config": args.model, "device": str(device),
                "threads": torch.get_num_threads(), "precision": args.precision,
                "channels_last": args.channels_last, "compile": args.compile, "cuda_graphs": args.cuda_graphs,
                "denoising_steps": config.sampler.num_steps, "batch": n,
                "env_steps_per_s": round(n / seconds, 2), "ms_per_step": round(1000 * seconds, 2),
                "gflop_per_step": round(gflop, 3), "achieved_tflops": round(gflop * n / seconds / 1000, 4),
                "conv_peak_gflops": conv_peak and round(conv_peak, 1),
                "matmul_peak_gflops": matmul_peak and round(matmul_peak, 1),
                "peak_fraction": conv_peak and round(gflop * n / seconds / conv_peak, 3),
                "peak_memory_mb": round(peak_memory_mb(device), 1)}
        if ale is not None:
            line.update(ale_steps_per_s=round(ale, 1), dream_over_ale=round(n / seconds / ale, 4))
        if eager is not None:
            eager_seconds = time_batch(eager, n, device, args.min_seconds)
            line.update(fp32_eager_env_steps_per_s=round(n / eager_seconds, 2),
                        speedup_over_fp32_eager=round(eager_seconds / seconds, 2))
        print(json.dumps(line), flush=True)
        if args.env:
            options = {"precision": args.precision, "compile": args.compile, "cuda_graphs": args.cuda_graphs,
                       "denoising_steps": args.denoising_steps}
            for env_line in env_lines(n, device, seconds, args.min_seconds, checkpoint, options):
                print(json.dumps({"config": args.model, "device": str(device), **env_line}), flush=True)


if __name__ == "__main__":
    main()
