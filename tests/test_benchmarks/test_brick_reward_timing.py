"""benchmarks/brick_reward_timing.py: the bricks Breakout pays for before it shows them gone, and what stand-in reward
models that read the wall, or the game's own labels, make of them."""

from types import SimpleNamespace

import numpy as np
import torch
from helpers import breakout_play, load_benchmark

from gym_diamond import to_uint8_frames
from training.data.bricks import brick_wall
from training.data.dataset import Episode, EpisodeDataset

timing = load_benchmark("brick_reward_timing")


def _breakout(root) -> EpisodeDataset:
    frames, rewards = breakout_play()
    dataset = EpisodeDataset(root, game="Breakout")
    for first, last in ((0, 300), (300, 600)):
        z = np.zeros(last - first, bool)
        dataset.append(Episode(frames[first:last + 1], np.zeros(last - first, np.int64),
                               rewards[first + 1:last + 1].astype(np.float32), z, z.copy(), z.copy()))
    return dataset


class StandInRewards(torch.nn.Module):
    """Pays +1 on a step where ``pays(frame, next frame)`` (uint8) holds, else 0, and never ends: the reward/termination
    model's call signature."""

    def __init__(self, pays) -> None:
        super().__init__()
        self.pays = pays

    def forward(self, frames, actions, next_frames):
        now, then = (to_uint8_frames(f.flatten(0, 1)).numpy() for f in (frames, next_frames))
        sign = torch.as_tensor([int(self.pays(a, b)) + 1 for a, b in zip(now, then, strict=True)])
        shape = frames.shape[:2]
        return SimpleNamespace(reward_logits=torch.nn.functional.one_hot(sign, 3).float().view(*shape, 3),
                               end_logits=torch.nn.functional.one_hot(torch.zeros(shape, dtype=torch.long), 2).float())


def _model(pays) -> SimpleNamespace:
    return SimpleNamespace(rew_end=StandInRewards(pays), device=torch.device("cpu"))


def test_a_brick_paid_for_shows_gone_on_the_next_frame_or_one_step_later(tmp_path):
    dataset = _breakout(tmp_path / "breakout")
    for e in (0, 1):
        steps, paid = dataset.episode(e), timing.paid_bricks(dataset, e)
        walls = brick_wall(steps.frames)
        assert sorted([*paid["shown"], *paid["unshown"]]) == np.flatnonzero(steps.rewards > 0).tolist()
        assert all((walls[t] & ~walls[t + 1]).any() for t in paid["shown"])
        assert all((walls[t] == walls[t + 1]).all() and (walls[t + 1] & ~walls[t + 2]).any() for t in paid["unshown"])
    report = timing.timing_report(dataset, [0, 1])
    assert report["paid_bricks"] == 13 and report["shown_a_step_late"] >= 1  # the follower's dozen bricks, some late
    assert "read_shown" not in report


def test_a_model_that_reads_the_wall_pays_the_late_bricks_a_step_late_and_one_that_reads_the_game_does_not(tmp_path):
    dataset = _breakout(tmp_path / "breakout")
    wall_reader = _model(lambda frame, after: (brick_wall(frame[None]) & ~brick_wall(after[None])).any())
    report = timing.timing_report(dataset, [0, 1], wall_reader)
    assert report["read_shown"] == 1.0 and report["read_unshown"] == 0.0
    assert report["paid_on_the_step_after_unshown"] == 1.0
    paid = {(frames.tobytes(), after.tobytes()) for e in (0, 1)
            for frames, after, reward in zip(dataset.episode(e).frames[:-1], dataset.episode(e).frames[1:],
                                             dataset.episode(e).rewards, strict=True) if reward > 0}
    game_reader = _model(lambda frame, after: (frame.tobytes(), after.tobytes()) in paid)
    report = timing.timing_report(dataset, [0, 1], game_reader)
    assert report["read_shown"] == report["read_unshown"] == 1.0 and report["paid_on_the_step_after_unshown"] == 0.0


def test_the_command_counts_the_held_out_episodes_paid_bricks(tmp_path, capsys):
    import json

    dataset = _breakout(tmp_path / "breakout")
    timing.main(["--data", str(dataset.root), "--test-fraction", "0.5"])
    line = json.loads(capsys.readouterr().out)
    held = dataset.split(0.5, seed=0)[1]
    assert line["episodes"] == len(held) == 1
    assert line["paid_bricks"] == int((dataset.episode(int(held[0])).rewards > 0).sum())
