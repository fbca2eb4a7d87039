"""How faithful is a world model on held-out real episodes? One JSON line per horizon.

    python benchmarks/world_model_fidelity.py --checkpoint runs/Pong-demo/world_model.safetensors \
        --data runs/Pong-demo/data --test-fraction 0.2 --samples 64

For real segments of the held-out episodes the model starts from the 4 real context frames and is fed
the real actions; it is scored by PSNR against the real frames after 1 and 15 imagined steps
(``--horizons``), next to the trivial baseline that repeats the last context frame. Reward (sign) and
termination accuracy are for the first imagined step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np
import torch

from gym_diamond import BatchedGenerator, load_checkpoint
from gym_diamond.acceleration import PRECISIONS, Acceleration
from gym_diamond.config import QUANTIZATIONS
from gym_diamond.envs.core import to_model_frames
from training.dataset import EpisodeDataset


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of frames in [-1, 1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 15])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--denoising-steps", type=int, default=None, help="override the sampler's (fewer: faster)")
    parser.add_argument("--quantization", choices=QUANTIZATIONS, default=None,
                        help="override the sampler's: floor (DIAMOND's truncation) or round")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="autocast of the networks")
    args = parser.parse_args()

    ckpt = load_checkpoint(args.checkpoint, device=args.device)
    model, L = ckpt.world_model.eval(), ckpt.config.denoiser.context_length
    sampler = model.config.sampler
    if args.denoising_steps:
        sampler = dataclasses.replace(sampler, num_steps=args.denoising_steps)
    if args.quantization:
        sampler = dataclasses.replace(sampler, quantization=args.quantization)
    model.config = model.config.replace(sampler=sampler)
    model.accelerate(Acceleration(precision=args.precision))
    dataset = EpisodeDataset(args.data, game=ckpt.game)
    _, test_ids = dataset.split(args.test_fraction, seed=0)  # the split training.world_model --test-fraction holds out
    rng = np.random.default_rng(args.seed)
    H = max(args.horizons)
    seg = dataset.sample_segments(args.samples, L + H, rng, episode_ids=test_ids, require_last=False, recency=False)
    # keep segments whose context and first step are real; later steps count only where real
    frames = to_model_frames(torch.as_tensor(seg.frames, device=args.device))  # (B, L+H+1, 3, 64, 64)
    actions = torch.as_tensor(seg.actions, device=args.device).long()
    mask = torch.as_tensor(seg.mask, device=args.device).bool()
    valid = mask[:, :L].all(1)
    frames, actions, mask = frames[valid], actions[valid], mask[valid]
    rewards = torch.as_tensor(seg.rewards, device=args.device)[valid]
    terminated = torch.as_tensor(seg.terminated, device=args.device)[valid]
    n = len(frames)
    context, context_actions = frames[:, :L].clone(), actions[:, :L].clone()
    state = model.burn_in(context, context_actions)
    generator = BatchedGenerator(range(n), device=args.device)
    last_real = frames[:, L - 1]
    for h in range(1, H + 1):
        context_actions[:, -1] = actions[:, L + h - 2]
        out = model.imagine_step(context, context_actions, state, generator)
        state = out.state
        context = torch.cat([context[:, 1:], out.next_frame[:, None]], dim=1)
        context_actions = torch.cat([context_actions[:, 1:], torch.zeros_like(context_actions[:, :1])], dim=1)
        if h == 1:
            step = L - 1
            reward_acc = (out.reward == rewards[:, step].sign()).float().mean().item()
            end_acc = (out.terminated == terminated[:, step]).float().mean().item()
        if h in args.horizons:
            real = frames[:, L + h - 1]
            ok = mask[:, L + h - 2]  # the real frame exists (the transition into it is real)
            line = {"horizon": h, "samples": int(ok.sum()),
                    "psnr_model": round(psnr(out.next_frame[ok], real[ok]).mean().item(), 2),
                    "psnr_repeat_last": round(psnr(last_real[ok], real[ok]).mean().item(), 2)}
            if h == 1:
                line.update(reward_accuracy=round(reward_acc, 3), termination_accuracy=round(end_acc, 3))
            print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, "precision": args.precision,
                              "denoising_steps": sampler.num_steps, "quantization": sampler.quantization,
                              **line}), flush=True)


if __name__ == "__main__":
    main()
