"""Where in a bounce the dream loses the ball: each step of real returns off the player's paddle dreamt one step
from the real frames before it, and denoised from the real frame through noise (Pong, Breakout).

``python -m training.fidelity --returns`` counts the returns a dream draws open loop; it cannot say at which step
the ball went, nor whether a better sampler would keep it. Per step after the ball's approach this prints the share
of real frames with the ball whose one-step dream shows it within 2 px, and the share the denoiser keeps when handed
the real frame with noise of std 5, 2, 1 and 0.5 (the ball shows plainly through 0.5): a ball lost even there is one
the network has not learnt, whatever the sampler.

    python benchmarks/bounce_steps.py --data DATA --checkpoint WM [--samples 128] [--trained] [--denoising-steps K]
"""

from __future__ import annotations

import argparse
import json

from gym_diamond.checkpoint import read_metadata
from training.fidelity.bounce_steps import HINT_SIGMAS, BounceStepsReport, bounce_steps
from training.fidelity.held_out import judged_data, trained_episodes
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
    add_device_argument(parser)
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    main()
