"""Returns: the ball at the player's paddle, returned or let through (training.fidelity.returns), found in a ball's
path and dreamt by stand-in dreams that always return the ball, never return it, freeze it or drop it; Breakout's
found in real play and checked against the game's own lives."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import make_tiny_checkpoint, pong_frame, real_breakout_data, real_pong_data

from gym_diamond import to_model_frames, to_uint8_frames
from training.data.ball_paths import (
    ball_positions,
    classify_ball_paths,
    paddle_moments,
    return_geometry,
    return_transitions,
)
from training.data.dataset import Episode, EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.returns import ball_returns

PONG = return_geometry("Pong")
PADDLE, GOAL = PONG.paddle_line, PONG.goal_line
NAN = np.nan


def test_returns_and_misses_are_found_in_the_balls_path():
    #             frame: 0   1   2   3   4   5   6   7    8    9
    rally = np.array([40, 44, 48, 52, 54, 50, 46, 42, 38, 34], float)
    returns, misses = return_transitions(rally, context_length=2, paddle_line=56, goal_line=58, horizon=3)
    assert returns.tolist() == [3, 4] and misses.tolist() == []  # 52 and 54 lie 2-6 px before the paddle's column
    through = np.array([40, 45, 50, 53, 57, 60, NAN, NAN, NAN], float)
    returns, misses = return_transitions(through, context_length=2, paddle_line=56, goal_line=58, horizon=3)
    assert returns.tolist() == [] and misses.tolist() == [2, 3]
    returns, misses = return_transitions(through, context_length=4, paddle_line=56, goal_line=58, horizon=3)
    assert misses.tolist() == [3]  # frame 2 has too few real frames before it
    away = np.array([54, 52, 50, 48, 46, 44], float)  # at the paddle but moving away: not an approach
    assert [t.size for t in return_transitions(away, 2, 56, 58, 2)] == [0, 0]
    with pytest.raises(ValueError, match="context_length and horizon must be >= 1"):
        return_transitions(rally, context_length=2, paddle_line=56, goal_line=58, horizon=0)


def test_a_path_is_a_return_only_if_the_ball_comes_back_without_scoring():
    returned, missed = classify_ball_paths(np.array([52.0, 52, 52, 52]),
                                           np.array([[54, 50], [57, 59], [NAN, NAN], [53, 51.5]]), GOAL)
    assert returned.tolist() == [True, False, False, False]  # 51.5 is not more than a pixel back
    assert missed.tolist() == [False, True, False, False]


def _episode(xs: list[float | None]) -> Episode:
    T = len(xs) - 1
    return Episode(np.stack([pong_frame(x) for x in xs]), np.zeros(T, np.int64), np.zeros(T, np.float32),
                   np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool))


class StandInDream:
    """What ``ball_returns`` reads of a model: a 4-frame context on the CPU; subclasses draw the next frame."""

    config = SimpleNamespace(denoiser=SimpleNamespace(context_length=4))
    device = torch.device("cpu")


class BallMover(StandInDream):
    """A 4-frame dream that moves the last frame's ball ``dx`` pixels a step (``dx=0``: it freezes it)."""

    def __init__(self, dx: float) -> None:
        self.dx = dx

    def imagine_step(self, frames, actions, generator=None):
        assert frames.shape[1:] == (4, 3, 64, 64) and actions.shape == frames.shape[:2]
        seen = find_objects("Pong", to_uint8_frames(frames[:, -1]).numpy())
        nxt = np.stack([pong_frame(x + self.dx if v else None) for v, x in zip(seen.ball_visible,
                                                                                   seen.ball_xy[:, 0], strict=True)])
        return SimpleNamespace(next_frame=to_model_frames(torch.as_tensor(nxt)))


@pytest.fixture(scope="module")
def rallies(tmp_path_factory):
    """Two returns and three misses at the player's paddle."""
    dataset = EpisodeDataset(tmp_path_factory.mktemp("returns") / "pong", game="Pong")
    dataset.append(_episode([30, 34, 38, 42, 46, 50, 54, 50, 46, 42, 38, 34]))  # returned: frames 5 (50), 6 (54)
    dataset.append(_episode([30, 34, 38, 42, 47, 52, 57, 61, None, None, None, None]))  # through: frame 5 (52)
    dataset.append(_episode([20, 24, 28, 32, 36, 40, 44, 50, 53, 58, None, None, None]))  # through: 7 (50), 8 (53)
    return dataset


def test_dreams_that_bounce_pass_or_freeze_the_ball_are_told_apart(rallies):
    found = [return_transitions(o.ball_xy[:, 0], 4, PADDLE, GOAL, PONG.horizon)
             for o in (find_objects("Pong", rallies.episode(e).frames) for e in range(3))]
    assert sum(r.size for r, _ in found) == 2 and sum(m.size for _, m in found) == 3
    bounce = ball_returns(BallMover(-3), rallies, [0, 1, 2], samples=8)
    assert (bounce.returns, bounce.returned, bounce.misses, bounce.missed) == (2, 2, 3, 0)
    assert (bounce.let_through, bounce.returned_misses) == (0, 3)  # it returns the misses too
    through = ball_returns(BallMover(+3), rallies, [0, 1, 2], samples=8, batch_size=2)
    assert (through.returned, through.missed, through.let_through, through.returned_misses) == (0, 3, 2, 0)
    assert through.to_dict() == {"returns": 2, "return_drawn": 0.0, "return_let_through": 1.0,
                                 "return_dropped": 0.0, "misses": 3,
                                 "miss_drawn": 1.0, "miss_returned": 0.0, "fast_returns": 2,
                                 "fast_return_drawn": 0.0, "slow_return_drawn": None}  # both come at 4 px a step
    frozen = ball_returns(BallMover(0), rallies, [0, 1, 2], samples=8)
    assert (frozen.returned, frozen.missed, frozen.let_through, frozen.returned_misses) == (0, 0, 0, 0)
    assert frozen.dropped == 0  # held, not dropped
    gone = ball_returns(StillDream(black=True), rallies, [0, 1, 2], samples=8)
    assert (gone.returned, gone.let_through, gone.dropped, gone.dropped_share()) == (0, 0, 2, 1.0)
    assert ball_returns(BallMover(0), rallies, [0, 1, 2], samples=1).returns == 1  # a sample of them
    assert ball_returns(BallMover(0), rallies, [], samples=4).return_recall() is None
    with pytest.raises(ValueError, match="samples and batch_size must be >= 1"):
        ball_returns(BallMover(0), rallies, [0], samples=0)


class FastOnlyBouncer(StandInDream):
    """Returns the ball only where it came at more than 2.5 pixels a step; freezes a slower one."""

    def imagine_step(self, frames, actions, generator=None):
        last, before = (find_objects("Pong", to_uint8_frames(frames[:, i]).numpy()).ball_xy[:, 0] for i in (-1, -2))
        step = np.where(np.abs(last - before) > 2.5, -3.0, 0.0)
        nxt = np.stack([pong_frame(None if np.isnan(x) else x + dx) for x, dx in zip(last, step, strict=True)])
        return SimpleNamespace(next_frame=to_model_frames(torch.as_tensor(nxt)))


def test_the_returns_of_fast_balls_are_counted_apart(rallies, tmp_path):
    slow = EpisodeDataset(tmp_path / "slow", game="Pong")
    for e in range(3):
        slow.append(rallies.episode(e))
    slow.append(_episode([44, 46, 48, 50, 52, 54, 52, 50, 48, 46, 44, 42]))  # 2 px a step: returned at 52, 54
    report = ball_returns(FastOnlyBouncer(), slow, [0, 1, 2, 3], samples=8)
    assert (report.returns, report.fast_returns, report.returned, report.fast_returned) == (4, 2, 2, 2)
    assert (report.fast_return_recall(), report.slow_return_recall()) == (1.0, 0.0)
    bounce = ball_returns(BallMover(-3), slow, [0, 1, 2, 3], samples=8)
    assert (bounce.fast_return_recall(), bounce.slow_return_recall()) == (1.0, 1.0)
    only_slow = ball_returns(BallMover(-3), slow, [3], samples=8)
    assert (only_slow.fast_returns, only_slow.fast_return_recall(), only_slow.slow_return_recall()) == (0, None, 1.0)


def test_games_without_a_paddle_line_are_refused():
    with pytest.raises(ValueError, match="not in Boxing"):
        return_geometry("Boxing")


def test_a_ball_the_game_hides_once_let_through_is_a_miss_when_unseen_at_the_end():
    # Breakout: the ball runs down its y toward the paddle's row and is not seen below it
    geometry = return_geometry("Breakout")
    assert (geometry.axis, geometry.paddle_line, geometry.goal_line) == (1, 57.0, None)
    returned, missed = classify_ball_paths(np.array([54.0, 54, 54, 54]),
                                           np.array([[56, 55, 52.5], [56, NAN, NAN], [56, NAN, 55], [NAN, 56, 56]]),
                                           None)
    assert returned.tolist() == [True, False, False, False]  # back more than a pixel
    assert missed.tolist() == [False, True, False, False]  # unseen at the end; seen again is not a miss
    #             frame: 0   1   2   3   4   5   6   7   8   9   10
    rally = np.array([45, 47, 49, 51, 53, 55, 56, 55, 53, 51, 49], float)
    # 55 comes back past 54
    assert [t.tolist() for t in return_transitions(rally, 2, 57.0, None, horizon=4)] == [[5], []]
    through = np.array([45, 47, 49, 51, 53, 55, 56, NAN, NAN, NAN, NAN], float)
    assert [t.tolist() for t in return_transitions(through, 2, 57.0, None, horizon=4)] == [[], [3, 4, 5]]


class StillDream(StandInDream):
    """A 4-frame dream that repeats its last frame, or draws a black one (no ball, no paddle)."""

    def __init__(self, black: bool) -> None:
        self.black = black

    def imagine_step(self, frames, actions, generator=None):
        return SimpleNamespace(next_frame=torch.full_like(frames[:, -1], -1.0) if self.black else frames[:, -1])


@pytest.fixture(scope="module")
def breakout_play(tmp_path_factory):
    return real_breakout_data(tmp_path_factory.mktemp("breakout") / "play")


def test_breakouts_misses_are_the_lives_the_game_takes(breakout_play):
    found = paddle_moments(breakout_play, range(len(breakout_play)), context_length=4)
    assert found["returns"], "the follower returns some balls"
    for e in range(len(breakout_play)):
        misses = [s for episode, s in found["misses"] if episode == e]
        returns = [s for episode, s in found["returns"] if episode == e]
        length = len(breakout_play.episode(e).actions)
        # the game takes the life within a few frames of the ball getting by: each life ends with misses found just
        # before its end, and every return lies well before it
        assert misses and all(length - s <= 20 for s in misses), (e, misses, length)
        assert all(length - s > 20 for s in returns), (e, returns, length)
    frozen = ball_returns(StillDream(black=False), breakout_play, range(len(breakout_play)), samples=64)
    assert frozen.returns == len(found["returns"]) and (frozen.returned, frozen.missed) == (0, 0)
    dropped = ball_returns(StillDream(black=True), breakout_play, range(len(breakout_play)), samples=64)
    assert (dropped.returned, dropped.missed) == (0, len(found["misses"]))  # a ball gone under the paddle
    ball = ball_positions("Breakout", breakout_play.episode(0).frames)
    assert np.nanmax(ball) <= 57.0 and np.nanmin(ball) > 8  # rows between the top of the bricks and the paddle


def test_the_fidelity_command_reports_returns(tmp_path, capsys, one_thread):
    from training.fidelity.__main__ import main

    data = real_pong_data(tmp_path / "pong", episodes=2, steps=300)
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    main(["--checkpoint", str(checkpoint), "--data", str(data), "--samples", "3", "--horizons", "1",
          "--denoising-steps", "1", "--returns"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["misses"] >= 1 and line["denoising_steps"] == 1  # random play lets the ball through
    assert line["sampler_start"] == "unit"  # the checkpoint's, DIAMOND's
    main(["--checkpoint", str(checkpoint), "--data", str(data), "--samples", "3", "--horizons", "1",
          "--denoising-steps", "1", "--sampler-start", "sigma_max", "--returns"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["sampler_start"] == "sigma_max"
    assert set(line) >= {"returns", "return_drawn", "misses", "miss_drawn"}
    boxing = make_tiny_checkpoint(tmp_path / "Boxing.safetensors", game="Boxing")
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(boxing), "--data", str(data), "--returns"])
    assert "not in Boxing" in capsys.readouterr().err
