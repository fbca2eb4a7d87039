"""How faithful is a world model on held-out real episodes? One JSON line per horizon.

    python benchmarks/world_model_fidelity.py --checkpoint runs/Pong-demo/world_model.safetensors \
        --data runs/Pong-demo/data --test-fraction 0.2 --samples 64

For real segments of the held-out episodes the model starts from the 4 real context frames and is fed
the real actions; it is scored by PSNR against the real frames after 1 and 15 imagined steps
(``--horizons``), next to the trivial baseline that repeats the last context frame. ``psnr_*`` is the
mean of per-sample PSNRs, ``pooled_psnr_*`` the PSNR of the mean squared error over all samples: where
the real frame did not change (``repeat_last_exact`` samples), repeat-last scores 106 dB on it (the
clamp), which lifts its mean of PSNRs by several dB (Pong, 15 of 254 samples: 39.7 against 34.9
pooled), while the pooled figure counts it as the zero error it is. Reward (sign) and termination
accuracy are for the first imagined step. ``--events`` adds one line on every transition of
the held-out episodes: recall, precision and confusion of the reward sign and of terminations
(training.fidelity), the events that random segments rarely hold.

For Pong and Breakout each line also says whether the dream shows the ball and the player's paddle
where the real frames do (``training.fidelity.object_agreement``), which PSNR barely notices: of the real
frames with a ball, ``ball_real``, the share whose dream shows one (``ball_shown_model``) and the share
whose dreamed ball lies within 2 pixels of the real one (``ball_within_2px_model``); the same for the
paddle, and for repeat-last (``*_repeat_last``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, load_checkpoint
from gym_diamond.acceleration import PRECISIONS, Acceleration
from gym_diamond.atari import game_to_name
from gym_diamond.config import QUANTIZATIONS
from gym_diamond.envs.core import to_model_frames, to_uint8_frames
from training.dataset import EpisodeDataset
from training.fidelity import ObjectAgreement, event_confusion, object_agreement
from training.objects import OBJECT_GAMES


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample PSNR in dB of frames in [-1, 1] (peak-to-peak 2)."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-10)
    return 10 * torch.log10(4.0 / mse)


def pooled_psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of the mean squared error over all samples: a frame that repeats exactly (mse 0, 106 dB after the
    clamp) does not outweigh the others, as it does in the mean of per-sample PSNRs."""
    return 10 * torch.log10(4.0 / (a - b).pow(2).mean().clamp_min(1e-10)).item()


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
    parser.add_argument("--reference-precision", choices=PRECISIONS, default=None,
                        help="also dream in this precision (same seeds): PSNR of each against the real frames "
                             "and between the two dreams")
    parser.add_argument("--events", action="store_true",
                        help="also score rewards and terminations on every held-out transition (confusion matrices)")
    args = parser.parse_args()

    ckpt = load_checkpoint(args.checkpoint, device=args.device)
    model = ckpt.world_model.eval()
    sampler = model.config.sampler
    if args.denoising_steps:
        sampler = dataclasses.replace(sampler, num_steps=args.denoising_steps)
    if args.quantization:
        sampler = dataclasses.replace(sampler, quantization=args.quantization)
    model.config = model.config.replace(sampler=sampler)
    dataset = EpisodeDataset(args.data, game=ckpt.game)
    _, test_ids = dataset.split(args.test_fraction, seed=0)  # the split training.world_model --test-fraction holds out
    for line in fidelity_lines(model, dataset, test_ids, args.horizons, args.samples, seed=args.seed,
                               precision=args.precision, reference_precision=args.reference_precision):
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, "precision": args.precision,
                          "denoising_steps": sampler.num_steps, "quantization": sampler.quantization, **line}),
              flush=True)
    if args.events:
        report = event_confusion(model, dataset, test_ids)
        print(json.dumps({"checkpoint": args.checkpoint, "game": ckpt.game, "held_out_episodes": len(test_ids),
                          **report.to_dict()}), flush=True)


def fidelity_lines(model: WorldModel, dataset: EpisodeDataset, test_ids: np.ndarray, horizons: list[int],
                   samples: int, *, seed: int = 0, precision: str = "fp32",
                   reference_precision: str | None = None) -> list[dict[str, float]]:
    """PSNR of dreams against the real frames (and repeat-last) at each horizon, on held-out segments; for the
    games ``training.objects`` reads, ball and paddle agreement too."""
    L, device = model.config.denoiser.context_length, model.device
    rng = np.random.default_rng(seed)
    H = max(horizons)
    seg = dataset.sample_segments(samples, L + H + 1, rng, episode_ids=test_ids, beyond_end=True)
    # keep segments whose context and first step are real; later steps count only where real
    frames = to_model_frames(torch.as_tensor(seg.frames, device=device))  # (B, L+H+1, 3, 64, 64)
    actions = torch.as_tensor(seg.actions, device=device).long()
    mask = torch.as_tensor(seg.mask, device=device).bool()
    valid = mask[:, :L].all(1)
    frames, actions, mask = frames[valid], actions[valid], mask[valid]
    rewards = torch.as_tensor(seg.rewards, device=device)[valid]
    terminated = torch.as_tensor(seg.terminated, device=device)[valid]
    dream = imagine(model, precision, frames, actions, L, H)
    reference = imagine(model, reference_precision, frames, actions, L, H) if reference_precision else None
    objects = None
    if dataset.game is not None and game_to_name(dataset.game) in OBJECT_GAMES:
        objects = dream_objects(dataset.game, seg.frames[valid.cpu().numpy()], dream, mask.cpu().numpy(), L,
                                horizons)
    last_real = frames[:, L - 1]
    step = L - 1
    lines = []
    for h in horizons:
        real = frames[:, L + h - 1]
        ok = mask[:, L + h - 2]  # the real frame exists (the transition into it is real)
        line = {"horizon": h, "samples": int(ok.sum()),
                "psnr_model": round(psnr(dream.frames[h][ok], real[ok]).mean().item(), 2),
                "psnr_repeat_last": round(psnr(last_real[ok], real[ok]).mean().item(), 2),
                "pooled_psnr_model": round(pooled_psnr(dream.frames[h][ok], real[ok]), 2),
                "pooled_psnr_repeat_last": round(pooled_psnr(last_real[ok], real[ok]), 2),
                "repeat_last_exact": int((last_real[ok] == real[ok]).flatten(1).all(1).sum())}
        if reference is not None:
            line[f"psnr_model_{reference_precision}"] = round(psnr(reference.frames[h][ok], real[ok]).mean().item(), 2)
            line[f"psnr_to_{reference_precision}_dream"] = round(
                psnr(dream.frames[h], reference.frames[h]).mean().item(), 2)
        if objects is not None:
            line.update(objects.line(h))
        if h == 1:
            line.update(reward_accuracy=round((dream.reward == rewards[:, step].sign()).float().mean().item(), 3),
                        termination_accuracy=round((dream.terminated == terminated[:, step]).float().mean().item(), 3))
        lines.append(line)
    return lines


def dream_objects(game: str, real: np.ndarray, dream: Dream, mask: np.ndarray, L: int,
                  horizons: list[int]) -> ObjectAgreement:
    """Ball and paddle agreement of the dream (and of repeat-last) with the real uint8 frames ``real``
    (n, L+H+1, 64, 64, 3) of the segments it started from; ``mask`` (n, L+H) says which transitions are real."""
    H = len(dream.frames)
    predicted = np.stack([to_uint8_frames(dream.frames[h]).cpu().numpy() for h in range(1, H + 1)], axis=1)
    return object_agreement(game, real[:, :L], real[:, L:L + H], predicted, horizons=horizons,
                            valid=mask[:, L - 1:L + H - 1])


@dataclass
class Dream:
    frames: dict[int, torch.Tensor]  # horizon -> imagined frames (n, c, h, w)
    reward: torch.Tensor  # (n,) of the first imagined step
    terminated: torch.Tensor  # (n,)


def imagine(model: WorldModel, precision: str, frames: torch.Tensor, actions: torch.Tensor, L: int,
            H: int) -> Dream:
    """Dream H steps from the real contexts ``frames[:, :L]`` fed the real actions; the same random streams
    whatever the precision, so two precisions give the same dream up to their arithmetic."""
    model.accelerate(Acceleration(precision=precision))
    context, context_actions = frames[:, :L].clone(), actions[:, :L].clone()
    state = model.burn_in(context, context_actions)
    generator = BatchedGenerator(range(len(frames)), device=frames.device)
    out_frames, first = {}, None
    for h in range(1, H + 1):
        context_actions[:, -1] = actions[:, L + h - 2]
        out = model.imagine_step(context, context_actions, state, generator)
        state = out.state
        first = first or out
        out_frames[h] = out.next_frame
        context = torch.cat([context[:, 1:], out.next_frame[:, None]], dim=1)
        context_actions = torch.cat([context_actions[:, 1:], torch.zeros_like(context_actions[:, :1])], dim=1)
    return Dream(out_frames, first.reward, first.terminated)

if __name__ == "__main__":
    main()
