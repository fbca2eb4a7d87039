"""When does Breakout show the brick it pays for? And does the reward model read the bricks paid before they show?

The environment max-pools the last two of the 4 emulator frames of a step, as DIAMOND's does, so a brick the ball
breaks on the last emulator frame of a step is still drawn (by the frame before) when the step pays for it: the
next frame shows it gone, and the score changed, only one step later. DIAMOND's reward/termination model reads a
step's frame and the next (and its LSTM the steps before), so for those rewards it must read the ball meeting the
brick, not the brick gone; a model that pays for the brick gone pays a step late there, a payment its training labels
call wrong. This counts both kinds of paid bricks in held-out episodes (``shown``: a brick of the step's frame is gone
from the next; ``unshown``: not yet) and, given a checkpoint, the share of each the reward model reads (over
sequences of 19 transitions from a fresh state, as ``training.fidelity --events`` judges), and how often it pays on
the step after an unshown one, where the brick leaves the picture.

    python benchmarks/brick_reward_timing.py --data DATA [--checkpoint WM]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from gym_diamond import WorldModel
from training.data.bricks import brick_wall
from training.data.dataset import EpisodeDataset
from training.fidelity.held_out import judged_data
from training.fidelity.measures import episode_calls, rounded_share
from training.runtime.cli import add_device_argument, user_errors


def paid_bricks(dataset: EpisodeDataset, episode: int) -> dict[str, np.ndarray]:
    """The rewarded steps t of ``episode`` whose next frame shows a brick of frame t gone (``shown``) and those
    whose next frame does not yet (``unshown``)."""
    steps = dataset.episode(episode)
    paid = np.flatnonzero(steps.rewards > 0)
    walls = brick_wall(steps.frames)
    shown = (walls[paid] & ~walls[paid + 1]).any((1, 2))
    return {"shown": paid[shown], "unshown": paid[~shown]}


def timing_report(dataset: EpisodeDataset, episode_ids: np.ndarray, model: WorldModel | None = None
                  ) -> dict[str, float | int | None]:
    """How many paid bricks show at once and how many a step late; with ``model``, the share of each it reads and the
    share of the unshown ones it pays again on the next step, where the brick leaves the picture."""
    counts = {"shown": 0, "unshown": 0, "shown_read": 0, "unshown_read": 0, "paid_after_unshown": 0, "after": 0}
    for e in map(int, episode_ids):
        paid = paid_bricks(dataset, e)
        counts["shown"] += len(paid["shown"])
        counts["unshown"] += len(paid["unshown"])
        if model is None:
            continue
        reads, _ = episode_calls(model, dataset, e)
        counts["shown_read"] += int((reads[paid["shown"]] == 1).sum())
        counts["unshown_read"] += int((reads[paid["unshown"]] == 1).sum())
        after = paid["unshown"][paid["unshown"] + 1 < len(reads)] + 1
        after = after[~np.isin(after, paid["shown"])]  # a step paid for a brick of its own is no late payment
        counts["after"] += len(after)
        counts["paid_after_unshown"] += int((reads[after] == 1).sum())
    total = counts["shown"] + counts["unshown"]
    report: dict[str, float | int | None] = {
        "paid_bricks": total, "shown_at_once": counts["shown"], "shown_a_step_late": counts["unshown"],
        "late_share": rounded_share(counts["unshown"], total)}
    if model is not None:
        report.update(read_shown=rounded_share(counts["shown_read"], counts["shown"]),
                      read_unshown=rounded_share(counts["unshown_read"], counts["unshown"]),
                      paid_on_the_step_after_unshown=rounded_share(counts["paid_after_unshown"], counts["after"]))
    return report


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a Breakout dataset (python -m training.data.collect)")
    parser.add_argument("--checkpoint", help="a world model whose reward model reads the paid bricks; its held-out "
                                             "episodes are judged (without: the split of --test-fraction)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="the held-out fraction (default: the checkpoint's record, else 0.1)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    model, dataset, episodes = judged_data(args.data, "Breakout", args.checkpoint, args.test_fraction, args.device)
    print(json.dumps({"data": args.data, "checkpoint": args.checkpoint, "episodes": int(len(episodes)),
                      **timing_report(dataset, episodes, model)}))


if __name__ == "__main__":
    main()
