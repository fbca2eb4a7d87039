"""Does a denoiser repair a broken court in its context, or copy it?

Over hundreds of its own frames a dream lets the game's fixed court fade (Pong's walls shrink from their ends, the
bottom one goes): each frame loses a little, and the next copies what it was given. This asks the denoiser directly.
Held-out contexts of real play have the court (``training.data.objects.court_scene``) broken the same way in every
context frame; the next ``--steps`` frames are dreamed with the real actions; each line is the court kept
(``training.data.objects.court_kept``) in the last context frame, then in dreamed frames 1, 4 and ``--steps``, and
the court's level: how far its pixels lie from the background towards the court's colour (0 background, 1 the
court as drawn; a half faded court is 0.5 where the court kept reads 0). A denoiser that repairs climbs back
towards 1.0; one that copies stays where its context was.

    python benchmarks/court_repair.py --data DATA --checkpoint CKPT [CKPT ...] [--test-fraction F]

Contexts come from the episodes each checkpoint's run held out (``training.fidelity.held_out.held_out_episodes``;
``--test-fraction`` takes a part of them).

prints a JSON line per checkpoint: for each break, [court kept, court level] in the context and at dreamed steps.

Breaks: ``none`` (the real context), ``ends`` (the court's first and last 12 columns in the background colour),
``fade`` (the court half way to the background), ``gone`` (the whole court in the background colour).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import numpy as np
import torch

from gym_diamond import Checkpoint, load_checkpoint, to_model_frames, to_uint8_frames
from training.data.dataset import EpisodeDataset
from training.data.objects import court_kept, court_scene
from training.fidelity.held_out import held_out_episodes

BREAKS = ("none", "ends", "fade", "gone")
ENDS = 12  # columns at each side that "ends" takes away


def break_court(frames: np.ndarray, game: str, kind: str) -> np.ndarray:
    """uint8 ``frames`` (..., 64, 64, 3) with the court broken as ``kind`` says, in every frame."""
    walls, _, background = court_scene(game)
    out = frames.astype(np.float32)
    if kind == "ends":
        walls[:, ENDS:64 - ENDS] = False
    if kind == "fade":
        out[..., walls, :] = 0.5 * out[..., walls, :] + 0.5 * background
    elif kind in ("ends", "gone"):
        out[..., walls, :] = background
    elif kind != "none":
        raise ValueError(f"unknown break {kind!r}: expected one of {BREAKS}")
    return np.round(out).astype(np.uint8)


NextFrames = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (contexts (n, L, 64, 64, 3), actions (n, L)) -> (n, ...)


def court_level(game: str, frames: np.ndarray) -> np.ndarray:
    """(n,) the mean over the court's pixels of how far each lies from the background towards the court's colour,
    clipped to [0, 1]: 1.0 in real play, 0.5 for a court faded half way."""
    walls, colour, background = court_scene(game)
    direction = colour - background
    along = (frames[:, walls].astype(np.float32) - background) @ direction / (direction @ direction)
    return np.clip(along, 0, 1).mean(axis=1)


def court_repair(next_frames: NextFrames, frames: np.ndarray, actions: np.ndarray, game: str, context_length: int,
                 steps: int, kind: str) -> tuple[list[float], list[float]]:
    """The court kept and the court's level in the last broken context frame, then in each of ``steps`` dreamed
    frames (their means over the samples).

    frames: (n, context_length + steps, 64, 64, 3) uint8 of real play; actions (n, context_length + steps),
    actions[:, t] taken at frames[:, t]; ``next_frames`` dreams one frame of each context."""
    L = context_length
    context = break_court(frames[:, :L], game, kind)
    kept, level = [float(court_kept(game, context[:, -1]).mean())], [float(court_level(game, context[:, -1]).mean())]
    for t in range(steps):
        frame = next_frames(context, actions[:, t:t + L])
        kept.append(float(court_kept(game, frame).mean()))
        level.append(float(court_level(game, frame).mean()))
        context = np.concatenate([context[:, 1:], frame[:, None]], axis=1)
    return kept, level


def dreamer(checkpoint: Checkpoint, seed: int = 0) -> tuple[NextFrames, int]:
    """A checkpoint's denoiser as ``next_frames`` (its own sampler, one generator), and its context length."""
    model = checkpoint.world_model.eval()
    generator = torch.Generator().manual_seed(seed)

    def next_frames(context: np.ndarray, actions: np.ndarray) -> np.ndarray:
        step = model.imagine_step(to_model_frames(torch.from_numpy(context)), torch.from_numpy(actions).long(),
                                  generator=generator)
        return to_uint8_frames(step.next_frame).numpy()

    return next_frames, model.config.denoiser.context_length


def held_out_segments(dataset: EpisodeDataset, held: np.ndarray, samples: int, length: int,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(frames (samples, length, 64, 64, 3), actions (samples, length)) from random places in the episodes
    ``held``, every frame real (no padding)."""
    rng = np.random.default_rng(seed)
    lengths = dataset.lengths
    long_enough = [int(e) for e in held if lengths[e] > length]
    if not long_enough:
        raise SystemExit(f"no held-out episode of {dataset.root} is longer than {length} steps")
    ids = rng.choice(long_enough, samples)
    starts = np.array([rng.integers(0, lengths[e] - length) for e in ids])
    segment = dataset.get_segments(ids, starts, length)
    return segment.frames[:, :length], segment.actions


def held_out_parser(description: str, samples: int, steps: int) -> argparse.ArgumentParser:
    """The options of a benchmark that dreams from held-out contexts of a run's data: --data, --checkpoint (one or
    more), --test-fraction, --samples and --steps."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", required=True)
    parser.add_argument("--checkpoint", nargs="+", required=True)
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="judge on this held-out split (seed 0) of the run's own; default: the run's")
    parser.add_argument("--samples", type=int, default=samples)
    parser.add_argument("--steps", type=int, default=steps)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = held_out_parser(__doc__.splitlines()[0], samples=48, steps=8).parse_args(argv)
    dataset = EpisodeDataset(args.data)
    torch.set_num_threads(1)
    cached: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = {}
    for path in args.checkpoint:
        checkpoint = load_checkpoint(path)
        held = held_out_episodes(dataset, checkpoint.provenance, args.test_fraction)
        next_frames, L = dreamer(checkpoint)
        key = (L, tuple(held.tolist()))  # checkpoints of one run share their contexts
        if key not in cached:
            cached[key] = held_out_segments(dataset, held, args.samples, L + args.steps)
        frames, actions = cached[key]
        line = {"checkpoint": str(path)}
        for kind in BREAKS:
            kept, level = court_repair(next_frames, frames, actions, dataset.game, L, args.steps, kind)
            dreamed = sorted({1, min(4, args.steps), args.steps})
            line[kind] = {"context": [round(kept[0], 3), round(level[0], 3)],
                          **{f"step_{i}": [round(kept[i], 3), round(level[i], 3)] for i in dreamed}}
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
