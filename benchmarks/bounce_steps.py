"""Where in a bounce the dream loses the ball: each step of real returns off the player's paddle dreamt one step
from the real frames before it, and denoised from the real frame through noise (Pong, Breakout).

``python -m training.fidelity --returns`` counts the returns a dream draws open loop; it cannot say at which step
the ball went, nor whether a better sampler would keep it. Per step after the ball's approach this prints the share
of real frames with the ball whose one-step dream shows it within 2 px, and the share the denoiser keeps when handed
the real frame with noise of std 5, 2, 1 and 0.5 (the ball shows plainly through 0.5): a ball lost even there is one
the network has not learnt, whatever the sampler.

    python benchmarks/bounce_steps.py --data DATA --checkpoint WM [--samples 128] [--trained] [--denoising-steps K]
    python benchmarks/bounce_steps.py --data DATA --checkpoint WM --pictures lost.png [--picture-step 3]

``--pictures`` draws, at one step and noise level (default: the step where the denoiser keeps the fewest balls at
the lowest level), up to ``--windows`` returns whose ball it loses: per row, crops around the real ball of the L
context frames, the real frame, the denoiser's estimate and their difference (needs Pillow, the ``video`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from gym_diamond.checkpoint import read_metadata
from training.data.objects import find_objects
from training.fidelity.bounce_steps import HINT_SIGMAS, BounceStepsReport, bounce_steps, hinted_frames
from training.fidelity.held_out import judged_data, trained_episodes
from training.fidelity.measures import object_within
from training.runtime.cli import add_device_argument, user_errors


def report_lines(report: BounceStepsReport) -> list[str]:
    """One line a step: the real frames with the ball, the dream's shares, the denoiser's from the noisy real one."""
    lines = [f"{report.returns} real returns; step after the approach: real balls, dreamt shown / within 2 px, "
             "denoised from the real frame within 2 px at sigma ..."]
    for step in report.steps:
        row = step.to_dict()
        hinted = "  ".join(f"{sigma}: {_figure(share)}" for sigma, share in row["hinted_within"].items())
        lines.append(f"step {step.step}: {row['real']:4d}  {_figure(row['shown'])} / {_figure(row['within'])}   "
                     f"{hinted}")
    return lines


CROP = 24  # pixels of a picture's crop around the real ball
GAP = 1  # grey pixels around each crop


def weakest_step(report: BounceStepsReport, sigma: float) -> int:
    """The step whose real balls the denoiser keeps least at ``sigma`` (the first of equals)."""
    shares = [(s.hinted[sigma].within / s.hinted[sigma].real if s.hinted[sigma].real else 1.0, s.step)
              for s in report.steps]
    return min(shares)[1]


def lost_ball_rows(game: str, frames: np.ndarray, estimates: np.ndarray, windows: int) -> np.ndarray | None:
    """Rows of crops around the real ball (context frames, real, estimate, |difference|) of the first ``windows``
    frames whose ball the estimate does not show within 2 px; None where it shows them all."""
    real = find_objects(game, frames[:, -1]).of("ball")
    kept = object_within(real, find_objects(game, estimates).of("ball"))
    lost = np.flatnonzero(real[0] & ~kept)[:windows]
    if lost.size == 0:
        return None
    rows = []
    for i in lost:
        x, y = (int(round(v)) for v in real[1][i])
        top, left = (min(max(v - CROP // 2, 0), 64 - CROP) for v in (y, x))
        difference = np.abs(frames[i, -1].astype(np.int16) - estimates[i]).astype(np.uint8)
        tiles = [*frames[i], estimates[i], difference]
        rows.append(np.concatenate([np.pad(t[top:top + CROP, left:left + CROP], ((GAP, GAP), (GAP, GAP), (0, 0)),
                                           constant_values=90) for t in tiles], axis=1))
    return np.concatenate(rows, axis=0)


def _figure(share: float | None) -> str:
    return "-" if share is None else f"{share:.2f}"


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset (python -m training.data.collect)")
    parser.add_argument("--checkpoint", required=True, help="the world model")
    parser.add_argument("--samples", type=int, default=64, help="real returns to dream")
    parser.add_argument("--trained", action="store_true",
                        help="the episodes the checkpoint trained on instead of its held-out ones: is the bounce "
                             "underfit (lost here too) or ungeneralised?")
    parser.add_argument("--sigmas", type=float, nargs="+", default=list(HINT_SIGMAS),
                        help="noise levels of the real frame the denoiser is handed")
    parser.add_argument("--denoising-steps", type=int, default=None, help="override the sampler's steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pictures", type=Path, default=None,
                        help="a PNG of returns whose ball the denoiser loses, at --picture-step and --picture-sigma")
    parser.add_argument("--picture-step", type=int, default=None,
                        help="the step to draw (default: where the denoiser keeps the fewest balls)")
    parser.add_argument("--picture-sigma", type=float, default=None,
                        help="the noise level to draw (default: the lowest of --sigmas)")
    parser.add_argument("--windows", type=int, default=8, help="rows of the picture")
    parser.add_argument("--scale", type=int, default=8, help="pixels per frame pixel in the picture")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.windows < 1 or args.scale < 1:
        parser.error("--windows and --scale must be >= 1")
    metadata = read_metadata(args.checkpoint)
    model, dataset, episodes = judged_data(args.data, metadata["game"], args.checkpoint, device=args.device)
    if args.trained:
        episodes = trained_episodes(dataset, metadata.get("provenance", {}))
    if args.denoising_steps is not None:
        model.config = model.config.with_denoising_steps(args.denoising_steps)
    report = bounce_steps(model, dataset, episodes, samples=args.samples, seed=args.seed, sigmas=args.sigmas)
    print("\n".join(report_lines(report)))
    print(json.dumps({"checkpoint": args.checkpoint, "data": args.data,
                      "trained_episodes" if args.trained else "held_out_episodes": int(len(episodes)),
                      "denoising_steps": model.config.sampler.num_steps, **report.to_dict()}))
    if args.pictures is not None:
        sigma = min(args.sigmas) if args.picture_sigma is None else args.picture_sigma
        step = weakest_step(report, sigma) if args.picture_step is None else args.picture_step
        hinted = hinted_frames(model, dataset, episodes, step=step, sigma=sigma, samples=args.samples, seed=args.seed)
        picture = lost_ball_rows(dataset.game, hinted.frames, hinted.estimates, args.windows)
        if picture is None:
            print(f"the denoiser keeps every ball at step {step}, sigma {sigma}: no picture")
            return
        from PIL import Image

        args.pictures.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).resize((picture.shape[1] * args.scale, picture.shape[0] * args.scale),
                                        Image.NEAREST).save(args.pictures)
        print(f"wrote {args.pictures} (step {step}, sigma {sigma}: crops of the context frames, the real frame, the "
              f"denoiser's estimate from it through the noise, |difference|)")


if __name__ == "__main__":
    main()
