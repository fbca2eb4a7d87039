"""Pictures of real, dream and their difference, to look at before believing a fidelity figure.

    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out dream.png
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out punches.png --rewarded

Default: ``--windows`` random windows of ``--data``, each dreamed open loop from 4 real frames fed the real
actions; a row per window holds real | dream | |difference| at 1, 5 and 15 steps. ``--rewarded``: windows
that end on a rewarded transition; a row holds the frame it starts from, the real next frame, the dream's next
frame (one step from the real context and action) and their difference, and the command prints how often the
reward model reads the reward's sign off the real next frame and off the dream's: where the dream does not
draw what earns the reward, the second is near 0, and an agent in the dream is never rewarded for it.
Needs Pillow (the ``video`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gym_diamond import BatchedGenerator, load_checkpoint, resolve_device, to_model_frames, to_uint8_frames
from training.data.dataset import EpisodeDataset
from training.data.sampling import BatchSampler
from training.fidelity.measures import FIDELITY_HORIZONS
from training.fidelity.open_loop import imagine
from training.runtime.cli import add_device_argument, user_errors

HORIZONS = FIDELITY_HORIZONS
GAP = 4  # white pixels between groups


def _difference(real: np.ndarray, dream: np.ndarray) -> np.ndarray:
    return np.abs(real.astype(np.int16) - dream.astype(np.int16)).astype(np.uint8)


def _gap(height: int) -> np.ndarray:
    return np.full((height, GAP, 3), 255, np.uint8)


def horizon_rows(model, dataset: EpisodeDataset, windows: int, seed: int) -> np.ndarray:
    """Rows of real | dream | difference at each of ``HORIZONS`` steps for ``windows`` random windows."""
    L, H = model.config.denoiser.context_length, max(HORIZONS)
    segments = BatchSampler(dataset).sample_segments(8 * windows, L + H, np.random.default_rng(seed))
    whole = np.flatnonzero(segments.frame_mask.all(1))[:windows]
    if whole.size == 0:
        raise ValueError(f"no window of {L + H} frames in {dataset.root}: the episodes are too short")
    frames = to_model_frames(torch.as_tensor(segments.frames[whole], device=model.device))
    actions = torch.as_tensor(segments.actions[whole], device=model.device).long()
    dream = imagine(model, "fp32", frames, actions, L, H)
    dreamed = {h: to_uint8_frames(dream.frames[h]).cpu().numpy() for h in HORIZONS}
    rows = []
    for i, row in enumerate(whole):
        cells = []
        for h in HORIZONS:
            real = segments.frames[row, L - 1 + h]
            cells += [real, dreamed[h][i], _difference(real, dreamed[h][i]), _gap(real.shape[0])]
        rows.append(np.concatenate(cells[:-1], 1))
    return np.concatenate(rows, 0)


@torch.no_grad()
def rewarded_rows(model, dataset: EpisodeDataset, windows: int, seed: int) -> tuple[np.ndarray, dict[str, float]]:
    """Rows of frame t | real t+1 | dream t+1 | difference at rewarded transitions, and the reward model's reads."""
    L = model.config.denoiser.context_length
    episodes, steps = BatchSampler(dataset).sample_rewarded_transitions(8 * max(windows, 8),
                                                                        np.random.default_rng(seed))
    segments = dataset.get_segments(episodes, steps - (L - 1), L)  # frames t-L+1 .. t+1, actions up to t
    whole = np.flatnonzero(segments.frame_mask.all(1))
    if whole.size == 0:
        raise ValueError(f"no rewarded transition in {dataset.root} has {L} frames before it")
    frames = to_model_frames(torch.as_tensor(segments.frames[whole], device=model.device))
    actions = torch.as_tensor(segments.actions[whole], device=model.device).long()
    model.eval()
    generator = BatchedGenerator([seed * 1_000_003 + k for k in range(len(whole))], device=model.device)
    dreamed = model.imagine_step(frames[:, :L], actions[:, :L], generator=generator).next_frame
    signs = np.sign(segments.rewards[whole, -1]).astype(int)

    def read(next_frames: torch.Tensor) -> np.ndarray:
        out = model.rew_end(frames[:, L - 1:L], actions[:, L - 1:L], next_frames[:, None])
        return out.reward_logits[:, -1].argmax(-1).cpu().numpy() - 1

    on_real, on_dream = read(frames[:, L]), read(dreamed)
    figures = {"rewarded_transitions": int(len(whole)),
               "reward_read_on_real_next_frame": float(np.mean(on_real == signs)),
               "reward_read_on_dream_next_frame": float(np.mean(on_dream == signs)),
               "any_reward_on_dream_next_frame": float(np.mean(on_dream != 0))}
    dream_uint8 = to_uint8_frames(dreamed).cpu().numpy()
    rows = []
    for i in range(min(windows, len(whole))):
        start, real = segments.frames[whole[i], L - 1], segments.frames[whole[i], L]
        rows.append(np.concatenate([start, _gap(real.shape[0]), real, dream_uint8[i],
                                    _difference(real, dream_uint8[i])], 1))
    return np.concatenate(rows, 0), figures


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a world model (.safetensors)")
    parser.add_argument("--data", required=True, help="a dataset folder (python -m training.data.collect)")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--windows", type=int, default=4, help="rows of the picture")
    parser.add_argument("--rewarded", action="store_true",
                        help="windows ending on a rewarded transition, one step ahead, with the reward model's reads")
    parser.add_argument("--scale", type=int, default=2, help="pixels per frame pixel")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.windows < 1 or args.scale < 1:
        parser.error("--windows and --scale must be >= 1")
    checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    dataset = EpisodeDataset(args.data, game=checkpoint.game)
    if args.rewarded:
        picture, figures = rewarded_rows(checkpoint.world_model, dataset, args.windows, args.seed)
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, **figures}))
        columns = "frame t | real t+1, dream t+1, |difference|"
    else:
        picture = horizon_rows(checkpoint.world_model, dataset, args.windows, args.seed)
        columns = "real, dream, |difference| at " + ", ".join(map(str, HORIZONS)) + " steps"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).resize((picture.shape[1] * args.scale, picture.shape[0] * args.scale),
                                    Image.NEAREST).save(args.out)
    print(f"wrote {args.out} ({columns})")


if __name__ == "__main__":
    main()
