"""Bricks: the steps of real Breakout that break bricks and those that keep the wall (training.fidelity.bricks),
dreamt one step ahead by stand-in dreams that repeat their last frame, draw the game's own next frame, or a black
one."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import breakout_play

from gym_diamond import to_model_frames
from training.data.dataset import Episode, EpisodeDataset
from training.fidelity.bricks import brick_breaks, brick_moments


@pytest.fixture(scope="module")
def breakout(tmp_path_factory):
    """600 steps of real Breakout played by the ball follower, a dozen bricks broken, cut in two episodes."""
    frames, rewards = breakout_play()
    dataset = EpisodeDataset(tmp_path_factory.mktemp("bricks") / "breakout", game="Breakout")
    for first, last in ((0, 300), (300, 600)):
        none = np.zeros(last - first, bool)
        dataset.append(Episode(frames[first:last + 1], np.zeros(last - first, np.int64),
                               rewards[first + 1:last + 1].astype(np.float32), none, none.copy(), none.copy()))
    return dataset


class StandInDream:
    """A 4-frame dream whose next frame is ``draw(last context frame)`` (model space)."""

    def __init__(self, draw) -> None:
        self.draw = draw
        self.config = SimpleNamespace(denoiser=SimpleNamespace(context_length=4))
        self.device = torch.device("cpu")

    def imagine_step(self, frames, actions, generator=None):
        assert frames.shape[1:] == (4, 3, 64, 64) and actions.shape == frames.shape[:2]
        return SimpleNamespace(next_frame=torch.stack([self.draw(frame) for frame in frames[:, -1]]))


def test_breaks_are_the_steps_that_lose_a_brick(breakout):
    found = brick_moments(breakout, [0, 1], context_length=4)
    for e in (0, 1):
        paid = np.flatnonzero(breakout.episode(e).rewards > 0)  # rewards[s]: the step from frame s to s + 1
        breaks = np.array([s for episode, s in found["breaks"] if episode == e])
        assert len(paid) >= 3 and len(breaks) == len(paid)
        # the game shows a break on the frame it pays for, or on the next
        assert all(s in paid or s - 1 in paid for s in breaks)
        steady = [s for episode, s in found["steady"] if episode == e]
        assert len(steady) == 300 - 3 - len(breaks)  # every other step with a full context
    assert brick_moments(breakout, [0], context_length=301)["breaks"] == []  # no context that long
    with pytest.raises(ValueError, match="bricks are Breakout's: the dataset is of Pong"):
        brick_moments(EpisodeDataset(breakout.root.parent / "pong", game="Pong"), [], context_length=4)


def test_a_dream_that_keeps_its_wall_breaks_nothing_one_that_draws_the_game_breaks_as_it_and_a_black_one_never(
        breakout):
    following = {}
    for e in (0, 1):
        model_frames = to_model_frames(torch.as_tensor(breakout.episode(e).frames))
        following.update({frame.numpy().tobytes(): model_frames[t + 1] for t, frame in enumerate(model_frames[:-1])})
    keeping = StandInDream(lambda last: last.clone())
    game = StandInDream(lambda last: following[last.numpy().tobytes()])
    black = StandInDream(lambda last: torch.full_like(last, -1.0))

    report = brick_breaks(keeping, breakout, [0, 1], samples=8, seed=0, batch_size=3)
    assert report.breaks == 8 and report.steady == 8
    assert report.recall() == 0 and report.phantom_rate() == 0
    report = brick_breaks(game, breakout, [0, 1], samples=8, seed=0)
    assert report.recall() == 1 and report.phantom_rate() == 0
    report = brick_breaks(black, breakout, [0, 1], samples=8, seed=0)
    assert report.recall() == 0 and report.phantom_rate() == 1
    assert brick_breaks(keeping, breakout, [], samples=4).recall() is None
    with pytest.raises(ValueError, match="samples and batch_size must be >= 1"):
        brick_breaks(keeping, breakout, [0], samples=0)


def test_the_fidelity_command_reports_bricks_of_breakout_only(breakout, tmp_path, capsys, one_thread):
    import json

    from helpers import make_tiny_checkpoint

    from training.fidelity.__main__ import main

    checkpoint = make_tiny_checkpoint(tmp_path / "Breakout.safetensors", game="Breakout")
    main(["--checkpoint", str(checkpoint), "--data", str(breakout.root), "--test-fraction", "0.5", "--samples", "3",
          "--horizons", "1", "--denoising-steps", "1", "--bricks"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["breaks"] == 3 and line["steady"] == 3 and line["denoising_steps"] == 1
    assert 0 <= line["break_drawn"] <= 1 and 0 <= line["wall_phantom"] <= 1
    pong = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(pong), "--data", str(breakout.root), "--bricks"])
    assert "--bricks judges Breakout's wall: the checkpoint is a world model of Pong" in capsys.readouterr().err


def test_a_breakout_row_of_fidelity_csv_holds_the_bricks(breakout, one_thread):
    from gym_diamond import WorldModel, tiny_world_model_config
    from training.fidelity.figures import fidelity_figures, fidelity_line

    model = WorldModel(tiny_world_model_config(num_actions=4))
    row = fidelity_figures(model, breakout, np.array([1]), samples=2, events=False)
    assert row["brick_breaks_real"] == 2
    assert 0 <= row["brick_break_drawn"] <= 1 and 0 <= row["brick_wall_phantom"] <= 1
    assert "bricks broken as the game" in fidelity_line(5, 1.0, row)
