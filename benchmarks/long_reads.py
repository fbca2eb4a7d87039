"""Rewards and endings read over whole held-out episodes, as a long dream reads them: three ways to keep the
reward/termination LSTM state.

DIAMOND trains the reward/termination model on sequences of 19 transitions from a zero state and imagines 15 steps
after a burn-in of 3, so its reader never runs past that length; ``training.fidelity --events`` judges it the same
way (fresh sequences of 19). A gymnasium dream runs for hundreds of steps. This reads every held-out episode one
transition at a time, from its first L frames burnt in, as ``gym_diamond``'s dreams do, and counts the rewards and
endings read against the game's:

- ``fresh``: consecutive sequences of ``--window`` transitions, each from a zero state (``--events``' reading);
- ``carried``: one state carried over the whole episode (``rew_end_window=None``, DIAMOND's ``WorldModelEnv``);
- ``staggered``: two states restarted in turn every ``--window`` transitions, the older read (the dreams' default).

The first L - 1 transitions of each episode (the burn-in) are left out of every count.

    python benchmarks/long_reads.py --data DATA --checkpoint WM [--window 19] [--episodes N]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gym_diamond import WorldModel
from gym_diamond.checkpoint import read_metadata
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, check_window
from training.data.dataset import EpisodeDataset
from training.fidelity.episode_reads import dream_reading_confusion
from training.fidelity.held_out import judged_data
from training.fidelity.measures import EventReport, episode_calls
from training.runtime.cli import add_device_argument, user_errors

READINGS = ("fresh", "carried", "staggered")


def long_read_report(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int],
                     window: int = DEFAULT_WINDOW, batch_size: int = 16) -> dict[str, dict[str, object]]:
    """Reward and termination recall / precision (``EventReport``) of each reading over ``episode_ids``, the
    burn-in's transitions left out."""
    L = model.config.denoiser.context_length
    fresh = EventReport.empty()
    for e in map(int, episode_ids):
        episode, (signs, ends) = dataset.episode(e), episode_calls(model, dataset, e, sequence_length=window)
        fresh.add_calls(episode.rewards[L - 1:], episode.terminated[L - 1:], signs[L - 1:], ends[L - 1:])
    reports = {"fresh": fresh,
               "carried": dream_reading_confusion(model, dataset, episode_ids, window=None, batch_size=batch_size),
               "staggered": dream_reading_confusion(model, dataset, episode_ids, window=window,
                                                    batch_size=batch_size)}
    return {name: report.to_dict() for name, report in reports.items()}


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the dataset (python -m training.data.collect)")
    parser.add_argument("--checkpoint", required=True, help="the world model whose reward/termination model reads")
    parser.add_argument("--game", default=None, help="the dataset's game (default: the checkpoint's)")
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="transitions between restarts (fresh, staggered; default DIAMOND's 19)")
    parser.add_argument("--episodes", type=int, default=None, help="read only the first N held-out episodes")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="the held-out fraction (default: the checkpoint's record)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    check_window(args.window)
    game = args.game or read_metadata(args.checkpoint)["game"]
    model, dataset, episodes = judged_data(args.data, game, args.checkpoint, args.test_fraction, args.device)
    episodes = episodes[:args.episodes] if args.episodes else episodes
    print(json.dumps({"data": args.data, "checkpoint": args.checkpoint, "window": args.window,
                      "episodes": int(len(episodes)), **long_read_report(model, dataset, episodes, args.window)}))


if __name__ == "__main__":
    main()
