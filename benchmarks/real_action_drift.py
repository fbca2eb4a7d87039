"""How fast does a dream fed the real actions part from the real episode?

A dream in closed loop conditions every frame on frames it drew. This isolates that: from held-out real contexts it
dreams ``--steps`` frames with the actions the real episode took, so that a perfect dream would redraw the episode,
and compares each frame with the real one at its age (frames dreamed since the real context). Per age: the pixels
parted (a channel 32 or more of 255 levels off, as ``training.world_model.dream_contexts`` counts them) and, in
Pong, how far the opponent's paddle sits from the real one's row (median, share beyond 4 rows), which no action
moves: in the game it follows the ball; and the share of dreams that draw it in pieces (the game draws one). With
no sticky actions (DIAMOND's setting) the emulator's next frame follows from the actions, so what parts is the
dream's.

    python benchmarks/real_action_drift.py --data DATA --checkpoint CKPT [CKPT ...] [--steps 100 --samples 32]

Contexts come from the episodes each checkpoint's run held out (``training.fidelity.held_out.held_out_episodes``;
``--test-fraction`` takes a part of them). prints a JSON line per checkpoint, by age.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import torch

from gym_diamond import load_checkpoint, to_model_frames
from training.data.dataset import EpisodeDataset
from training.data.objects import find_opponent_paddle
from training.fidelity.held_out import held_out_episodes
from training.world_model import dream_contexts

_spec = importlib.util.spec_from_file_location("court_repair", Path(__file__).with_name("court_repair.py"))
court_repair = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(court_repair)

AGES = (1, 2, 4, 8, 16, 32, 64, 100, 200)


def parted_pixels(dreamed: np.ndarray, real: np.ndarray) -> np.ndarray:
    """(n,) pixels of uint8 frames (n, h, w, c) where a channel of the dream is 32 or more levels off the real."""
    frames = to_model_frames(torch.from_numpy(np.stack([dreamed, real])))  # the rule the training pool applies
    return dream_contexts.parted_pixels(frames[0], frames[1]).numpy()


def real_action_drift(next_frames: court_repair.NextFrames, frames: np.ndarray, actions: np.ndarray,
                      context_length: int, steps: int, game: str) -> dict[str, np.ndarray]:
    """Dream ``steps`` frames from ``frames[:, :context_length]`` with the real ``actions``: per sample and age,
    ``parted`` pixels and (Pong) the opponent paddle's ``opponent_rows`` from the real one (NaN where either is
    unseen) and the ``opponent_pieces`` the dream draws it in."""
    L = context_length
    context, parted, rows, pieces = frames[:, :L], [], [], []
    for t in range(steps):
        frame = next_frames(context, actions[:, t:t + L])
        real = frames[:, L + t]
        parted.append(parted_pixels(frame, real))
        if game == "Pong":
            dreamt = find_opponent_paddle(frame)
            rows.append(np.abs(dreamt.centre_y - find_opponent_paddle(real).centre_y))
            pieces.append(dreamt.pieces)
        context = np.concatenate([context[:, 1:], frame[:, None]], axis=1)
    drift = {"parted": np.stack(parted, axis=1)}
    if rows:
        drift["opponent_rows"], drift["opponent_pieces"] = np.stack(rows, axis=1), np.stack(pieces, axis=1)
    return drift


def by_age(drift: dict[str, np.ndarray]) -> dict[int, dict[str, float]]:
    """The figures at each of AGES the dream reached."""
    figures = {}
    for age in (a for a in AGES if a <= drift["parted"].shape[1]):
        parted = drift["parted"][:, age - 1]
        row = {"parted_median": float(np.median(parted)), "parted_p90": round(float(np.percentile(parted, 90)), 1)}
        if "opponent_rows" in drift:
            off = drift["opponent_rows"][:, age - 1]
            seen = off[~np.isnan(off)]
            row["opponent_median"] = round(float(np.median(seen)), 2) if seen.size else None
            row["opponent_over_4"] = round(float(np.mean(seen > 4)), 3) if seen.size else None
            row["opponent_in_pieces"] = round(float(np.mean(drift["opponent_pieces"][:, age - 1] > 1)), 3)
        figures[age] = row
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = court_repair.held_out_parser(__doc__.splitlines()[0], samples=32, steps=100)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.samples < 1:
        parser.error(f"--steps and --samples must be >= 1, got {args.steps} and {args.samples}")
    dataset = EpisodeDataset(args.data)
    torch.set_num_threads(1)
    for path in args.checkpoint:
        checkpoint = load_checkpoint(path)
        held = held_out_episodes(dataset, checkpoint.provenance, args.test_fraction)
        next_frames, L = court_repair.dreamer(checkpoint)
        frames, actions = court_repair.held_out_segments(dataset, held, args.samples, L + args.steps)
        drift = real_action_drift(next_frames, frames, actions, L, args.steps, dataset.game)
        print(json.dumps({"checkpoint": str(path), "samples": args.samples, "by_age": by_age(drift)}), flush=True)


if __name__ == "__main__":
    main()
