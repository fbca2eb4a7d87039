"""When does Breakout show the life it takes? And does the termination model read the lives lost that nothing shows?

ALE counts Breakout's life lost about 30 emulator frames after the ball's last frame on screen (``--emulator-frames``
measures it, one emulator frame at a time). With 4 emulator frames a step, the last two max-pooled into the frame (as
DIAMOND's environment does), the lives digit has changed on the episode's last frame in some endings and not in the
others, where it changes only on the first frame of the next life, which the episode never holds (DIAMOND, as we do,
ends an episode at each life lost). In those, the terminating transition looks like the steps before it: only the
steps since the ball left tell it, so the termination model must count them, from a state that saw the ball leave.
This counts both kinds of lives lost in held-out episodes (``shown``: the lives digit of the last frame differs from
the frame before; ``unshown``: not) and the steps from the ball's last frame to the episode's last, and, given a
checkpoint, the share of each kind its termination model reads (over sequences of 19 transitions from a fresh state,
as ``training.fidelity --events`` judges).

    python benchmarks/life_loss_timing.py --data DATA [--checkpoint WM] [--emulator-frames 60000]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter

import numpy as np

from gym_diamond import WorldModel
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.held_out import judged_data
from training.fidelity.measures import episode_calls, rounded_share
from training.runtime.cli import add_device_argument, user_errors

LIVES_DIGIT = (slice(0, 6), slice(38, 47))  # rows and columns of the lives digit in a 64 x 64 Breakout frame
# the emulator's own 210 x 160 screen: the ball's colour and the rows between the bricks and the paddle
BALL_RGB = (200, 72, 72)
BALL_ROWS = slice(100, 189)


def lives_lost(dataset: EpisodeDataset, episode: int) -> dict[str, np.ndarray]:
    """The terminating steps t of ``episode`` whose next frame shows the lives digit changed (``shown``) and those
    whose next frame does not (``unshown``)."""
    steps = dataset.episode(episode)
    ended = np.flatnonzero(steps.terminated)
    digit = steps.frames[:, LIVES_DIGIT[0], LIVES_DIGIT[1]].astype(np.int16)
    shown = np.array([(digit[t + 1] != digit[t]).any() for t in ended], bool)
    return {"shown": ended[shown], "unshown": ended[~shown]}


def steps_since_ball(dataset: EpisodeDataset, episode: int, step: int) -> int | None:
    """Steps from the last frame up to ``step``'s that shows the ball to ``step``'s next frame (None: none shows it)."""
    frames = dataset.episode(episode).frames[:step + 1]
    seen = np.flatnonzero(find_objects("Breakout", frames).ball_visible)
    return None if seen.size == 0 else step + 1 - int(seen[-1])


def timing_report(dataset: EpisodeDataset, episode_ids: np.ndarray, model: WorldModel | None = None
                  ) -> dict[str, object]:
    """How many lives lost show on the episode's last frame and how many do not, and the steps since the ball left
    (how many endings at each count; ``never``: no frame showed the ball); with ``model``, the share of each kind its
    termination model reads."""
    counts = {"shown": 0, "unshown": 0, "shown_read": 0, "unshown_read": 0}
    gone: Counter[int | None] = Counter()
    for e in map(int, episode_ids):
        lost = lives_lost(dataset, e)
        for kind in ("shown", "unshown"):
            counts[kind] += len(lost[kind])
            for t in lost[kind]:
                gone[steps_since_ball(dataset, e, int(t))] += 1
        if model is None:
            continue
        _, reads = episode_calls(model, dataset, e)
        counts["shown_read"] += int(reads[lost["shown"]].sum())
        counts["unshown_read"] += int(reads[lost["unshown"]].sum())
    total = counts["shown"] + counts["unshown"]
    report: dict[str, object] = {
        "lives_lost": total, "shown_on_the_last_frame": counts["shown"], "unshown": counts["unshown"],
        "unshown_share": rounded_share(counts["unshown"], total),
        "steps_since_the_ball": {**{str(k): gone[k] for k in sorted(k for k in gone if k is not None)},
                                 **({"never": gone[None]} if None in gone else {})}}
    if model is not None:
        report.update(read_shown=rounded_share(counts["shown_read"], counts["shown"]),
                      read_unshown=rounded_share(counts["unshown_read"], counts["unshown"]))
    return report


def emulator_delays(frames: int, seed: int = 0) -> dict[int, int]:
    """Breakout played one emulator frame at a time (a random policy that fires often): for each life lost, the
    emulator frames from the ball's last frame between the bricks and the paddle to the frame ALE counts it on, as
    {frames: lives lost}."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0)
    rng = np.random.default_rng(seed)
    screen, _ = env.reset(seed=seed)
    ale = env.unwrapped.ale
    lives, last_seen, delays = ale.lives(), None, Counter()
    for frame in range(frames):
        action = 1 if rng.random() < 0.3 else int(rng.integers(0, 4))
        screen, _, terminated, truncated, _ = env.step(action)
        if (screen[BALL_ROWS] == BALL_RGB).all(-1).any():
            last_seen = frame
        if ale.lives() < lives:
            if last_seen is not None:
                delays[frame - last_seen] += 1
            last_seen = None
        lives = ale.lives()
        if terminated or truncated:
            screen, _ = env.reset()
            lives, last_seen = ale.lives(), None
    env.close()
    return dict(sorted(delays.items()))


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a Breakout dataset whose episodes end at each life lost "
                                                      "(python -m training.data.collect)")
    parser.add_argument("--checkpoint", help="a world model whose termination model reads the lives lost; its "
                                             "held-out episodes are judged (without: the split of --test-fraction)")
    parser.add_argument("--test-fraction", type=float, default=None,
                        help="the held-out fraction (default: the checkpoint's record, else 0.1)")
    parser.add_argument("--emulator-frames", type=int, default=0,
                        help="also play this many emulator frames one at a time and count the frames from the "
                             "ball's last sight to each life lost (60,000: ~450 lives, 10 s)")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    model, dataset, episodes = judged_data(args.data, "Breakout", args.checkpoint, args.test_fraction, args.device)
    line = {"data": args.data, "checkpoint": args.checkpoint, "episodes": int(len(episodes)),
            **timing_report(dataset, episodes, model)}
    if args.emulator_frames > 0:
        line["emulator_frames_from_the_ball_to_the_life_lost"] = emulator_delays(args.emulator_frames)
    print(json.dumps(line))


if __name__ == "__main__":
    main()
