"""Training updates per second at batch 32: world model (denoiser + reward/termination) and actor-critic.

    python benchmarks/training_speed.py --model light                 # CPU, fp32 eager
    python benchmarks/training_speed.py --model paper --device cuda --precision bf16 --compile
    python benchmarks/training_speed.py --autoregressive-steps 0 1     # the cost of DIAMOND's second target
    python benchmarks/training_speed.py --denoising-steps 3 1          # the actor-critic in a 3- and a 1-step dream
    python benchmarks/training_speed.py --precision fp32 bf16 --rounds 2 --skip-actor-critic  # bf16 training pays?

Data are random frames in a temporary dataset (speed does not depend on their content). The
world-model line counts one denoiser update plus one reward/termination update (sequences of
``--rew-end-sequence-length`` frames), and a denoiser line its update alone, for each
``--autoregressive-steps`` (DIAMOND trains 1 + 1 targets per sample; 0 is one target); the
actor-critic line one imagined rollout of horizon 15 and its update, the dream run with the same
precision. One JSON line each. Several ``--precision`` values are timed in turn, ``--rounds`` times over
(fp32, bf16, fp32, bf16, ...), so a comparison shares one process and the machine's state of the moment.

How often dreams end matters: each restart samples real contexts and burns both LSTMs in. A random
reward/termination model ends about half of its dreams at every step, a trained one rarely (a Pong
game lasts hundreds of steps). ``--end-rate p`` makes the random model end each dream with probability
p per step (its termination logits set to log-odds p), like a trained one; the default leaves it as it is.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time

import numpy as np
import torch

from gym_diamond import WorldModel
from gym_diamond.acceleration import Acceleration
from gym_diamond.config import MODEL_SIZES
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.imagination import ImaginationConfig, ImaginationTrainer
from training.data.dataset import Episode, EpisodeDataset
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def random_dataset(num_actions: int, episodes: int = 4, length: int = 200, root: str | None = None) -> EpisodeDataset:
    """Random frames, actions and rewards in a dataset at ``root`` (default: a new temporary folder)."""
    dataset = EpisodeDataset(root or tempfile.mkdtemp(), game="Pong")
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        z = np.zeros(length, dtype=bool)
        dataset.append(Episode(rng.integers(0, 256, (length + 1, 64, 64, 3), dtype=np.uint8),
                               rng.integers(0, num_actions, length), rng.choice([-1.0, 0.0, 1.0], length)
                               .astype(np.float32), z, z.copy(), z.copy()))
    return dataset


class _EndLogOdds(torch.nn.Module):
    """Appended to the reward/termination head: termination logits fixed at log-odds ``rate``."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.register_buffer("offset", torch.tensor([0.0, 0.0, 0.0, 0.0, math.log(rate / (1 - rate))]))

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.cat([logits[..., :3], torch.zeros_like(logits[..., 3:])], dim=-1) + self.offset


def updates_per_s(step, device: torch.device, min_seconds: float, warmup: int) -> float:
    for _ in range(warmup):
        step()
    sync(device)
    n, start = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - start < min_seconds:
        step()
        n += 1
    sync(device)
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODEL_SIZES), default="light")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], nargs="+", default=["fp32"],
                        help="the networks' autocast in training; several values are timed in turn")
    parser.add_argument("--rounds", type=int, default=1, help="times every line is measured, interleaved")
    parser.add_argument("--skip-actor-critic", action="store_true", help="time the world model's updates only")
    parser.add_argument("--compile", action="store_true", help="torch.compile the networks")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                        help="the actor-critic's dream in NHWC, the dreams' default (world-model training is NHWC)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rew-end-sequence-length", type=int, default=19)
    parser.add_argument("--autoregressive-steps", type=int, nargs="+", default=[1],
                        help="denoiser targets after the first (DIAMOND: 1); several values are timed in turn")
    parser.add_argument("--min-seconds", type=float, default=10.0)
    parser.add_argument("--dream-precision", choices=["fp32", "bf16"], default=None,
                        help="the actor-critic's dream (default: --precision; the pipeline's default is the "
                             "device's, bf16 on a CPU with native bf16)")
    parser.add_argument("--horizon", type=int, default=ImaginationConfig.horizon,
                        help="imagined steps per actor-critic update (DIAMOND: 15)")
    parser.add_argument("--num-batches-to-preload", type=int, default=ImaginationConfig.num_batches_to_preload,
                        help="start contexts drawn and burnt in at once (DIAMOND: 256; fewer for a dry run)")
    parser.add_argument("--denoising-steps", type=int, nargs="+", default=[None],
                        help="Euler steps of the dream the actor-critic learns in (default: the model's, DIAMOND's "
                             "3); several values are timed in turn, e.g. 3 1")
    parser.add_argument("--actor-critic-channels", type=int, nargs=4, default=list(ActorCriticConfig.channels),
                        help="the actor-critic's 4 levels (DIAMOND's 32 32 64 64; smaller for a dry run)")
    parser.add_argument("--actor-critic-lstm-dim", type=int, default=ActorCriticConfig.lstm_dim,
                        help="the actor-critic's LSTM width (DIAMOND's 512)")
    parser.add_argument("--end-rate", type=float, default=None,
                        help="the actor-critic's dreams end with this probability per step (default: as the "
                             "random model does)")
    args = parser.parse_args(argv)
    if args.end_rate is not None and not 0 < args.end_rate < 1:
        parser.error(f"--end-rate must be in (0, 1), got {args.end_rate}")

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = WorldModel(MODEL_SIZES[args.model](6)).to(device)
    dataset = random_dataset(6)
    common = {"config": args.model, "device": str(device), "threads": torch.get_num_threads(),
              "compile": args.compile, "channels_last": args.channels_last, "batch": args.batch_size}
    warmup = 3 if args.compile else 1
    for round_ in range(1, args.rounds + 1):
        for precision in args.precision:
            line = {**common, "precision": precision, "round": round_}
            for steps in args.autoregressive_steps:
                wm = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(
                    batch_size=args.batch_size, rew_end_sequence_length=args.rew_end_sequence_length,
                    autoregressive_steps=steps, precision=precision, compile=args.compile))
                denoiser_rate = updates_per_s(wm.denoiser_step, device, args.min_seconds, warmup)
                print(json.dumps({"what": "denoiser_update", **line, "autoregressive_steps": steps,
                                  "updates_per_s": round(denoiser_rate, 3)}), flush=True)
                rate = updates_per_s(lambda wm=wm: (wm.denoiser_step(), wm.rew_end_step()), device,
                                     args.min_seconds, warmup)
                print(json.dumps({"what": "world_model_update", **line, "autoregressive_steps": steps,
                                  "rew_end_sequence_length": args.rew_end_sequence_length,
                                  "updates_per_s": round(rate, 3)}), flush=True)
    if args.skip_actor_critic:
        return

    if args.end_rate is not None:
        model.rew_end.head.append(_EndLogOdds(args.end_rate).to(device))
    own_config = model.config
    for round_ in range(1, args.rounds + 1):
        for precision in args.precision:
            dream_precision = args.dream_precision or precision
            model.accelerate(Acceleration(precision=dream_precision, compile=args.compile,
                                          channels_last=args.channels_last))
            for denoising_steps in args.denoising_steps:
                model.config = own_config if denoising_steps is None else own_config.with_denoising_steps(
                    denoising_steps)
                actor_critic = ActorCritic(ActorCriticConfig(6, channels=tuple(args.actor_critic_channels),
                                                             lstm_dim=args.actor_critic_lstm_dim)).to(device)
                ac = ImaginationTrainer(model, actor_critic, dataset, ImaginationConfig(
                    horizon=args.horizon, backup_every=args.horizon, batch_size=args.batch_size,
                    num_batches_to_preload=args.num_batches_to_preload, precision=precision, compile=args.compile))
                rate = updates_per_s(ac.step, device, args.min_seconds, warmup=warmup)
                print(json.dumps({"what": "actor_critic_update", **common, "precision": precision, "round": round_,
                                  "dream_precision": dream_precision,
                                  "denoising_steps": model.config.sampler.num_steps, "end_rate": args.end_rate,
                                  "horizon": args.horizon, "actor_critic_channels": args.actor_critic_channels,
                                  "actor_critic_lstm_dim": args.actor_critic_lstm_dim,
                                  "updates_per_s": round(rate, 3),
                                  "imagined_steps_per_s": round(rate * args.horizon * args.batch_size, 1)}),
                      flush=True)


if __name__ == "__main__":
    main()
