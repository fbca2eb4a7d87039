"""Judge a world model in closed loop alone: policies play the dream on its own frames and the real game.

``python -m training.closed_loop --checkpoint CKPT`` runs the closed-loop gate of ``python -m training.gates``
(``training.fidelity.closed_loop.closed_loop_report``) without the open-loop figures, the events and the agent
transfer: the quick check after a change of recipe or sampler, since a dream can predict real frames well and
still stop scoring once it plays on its own (DIAMOND judges a world model by the agent it trains, which needs
the dream's rewards and ends about as often as the game's). It prints one line per policy and event (dream
against real, per 1,000 steps), what it saw of the ball, and the verdict; ``--out`` writes the whole report as
JSON. The exit status is 0 whether the dream passes or not (``passed`` in the report says which).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from gym_diamond.checkpoint import read_metadata
from gym_diamond.config import SAMPLER_STARTS
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, check_window
from gym_diamond.errors import UserError
from training.fidelity.closed_loop import closed_loop_report
from training.runtime.cli import user_errors
from training.runtime.files import write_json_atomic

BALL_FIGURES = ("ball_shown", "extra_balls_share", "rewards_at_goal_share",  # reported where the game has a ball
                "court_kept_share")
FIGURES = ("repeated_rewards_share", *BALL_FIGURES)  # reported where both sides have them


def reading(window: int | None) -> str:
    """How the report's dream read its reward/termination LSTM, in words."""
    return "from one state carried over each episode" if window is None else f"staggered every {window} transitions"


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report as plain lines: each policy's event rates, dream against real, its other figures, the verdict."""
    lines = [f"{report['game']}: {report['steps_per_policy']} steps per policy, {report['num_envs']} envs, "
             f"{report['denoising_steps']} denoising steps from {report['sampler_start']} noise, "
             f"seed {report['seed']}, rewards and endings read {reading(report.get('rew_end_window', DEFAULT_WINDOW))} "
             f"(per 1,000 steps: dream / real)"]
    for policy, sides in report["policies"].items():
        dream, real = sides["dream"], sides["real"]
        rates = [f"{event} {dream['per_1000'][event]:.2f} / {real['per_1000'][event]:.2f}"
                 for event in report["events"]]
        figures = [f"{name} {dream[name]:.3f} / {real[name]:.3f}" for name in FIGURES
                   if name in dream and name in real]
        lines.append(f"  {policy:<14} " + ", ".join(rates + figures))
    if report["passed"]:
        lines.append("passed")
    else:
        lines.append(f"failed ({len(report['failures'])}):")
        lines += [f"  {failure['reason']}" for failure in report["failures"]]
    return lines


def window_or_carried(text: str) -> int | None:
    """``--rew-end-window``: transitions between restarts, or ``carried`` (None)."""
    if text == "carried":
        return None
    try:
        return check_window(int(text))
    except UserError as error:  # a whole number below 2
        raise argparse.ArgumentTypeError(str(error)) from None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of transitions or 'carried', got {text!r}") from None


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a world-model checkpoint (.safetensors)")
    parser.add_argument("--steps", type=int, default=4000,
                        help="agent steps per policy in the dream and in the real game (the gates' default is "
                             "20,000; fewer leave more to chance: Pong's follower wins about 1 point per 1,000)")
    parser.add_argument("--num-envs", type=int, default=8, help="dreams (and real games) played side by side")
    parser.add_argument("--policies", nargs="+", default=None,
                        help="who plays: random, follower, follower-eps0.25, ... (default: random and the game's "
                             "scripted players at several epsilons)")
    parser.add_argument("--denoising-steps", type=int, default=None, help="override the checkpoint's sampler steps")
    parser.add_argument("--sampler-start", choices=SAMPLER_STARTS, default=None,
                        help="where the sampler starts: unit noise (DIAMOND's) or noise scaled to sigma_max (EDM's; "
                             "with several steps the later ones pick one of a bounce's outcomes) (default: the "
                             "checkpoint's)")
    parser.add_argument("--max-episode-steps", type=int, default=None,
                        help="cut a dream's episode after this many steps (default: never, as the real game)")
    parser.add_argument("--rew-end-window", type=window_or_carried, default=DEFAULT_WINDOW,
                        help="read rewards and endings from two LSTM states restarted in turn every this many "
                             "transitions (default DIAMOND's 19, the dreams' default), or 'carried': one state over "
                             "each whole episode")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="write the report here as JSON")
    args = parser.parse_args(argv)
    for name in ("steps", "num_envs", "denoising_steps", "max_episode_steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")

    game = read_metadata(args.checkpoint)["game"]
    report = closed_loop_report(args.checkpoint, game, steps=args.steps, num_envs=args.num_envs, seed=args.seed,
                                policies=args.policies, denoising_steps=args.denoising_steps,
                                sampler_start=args.sampler_start, device=args.device,
                                max_episode_steps=args.max_episode_steps, progress=True,
                                rew_end_window=args.rew_end_window)
    if args.out is not None:
        write_json_atomic(args.out, report)
    print("\n".join(report_lines(report)), flush=True)


if __name__ == "__main__":
    main()
