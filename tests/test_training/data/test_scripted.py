"""The scripted ball follower: it reads the frames right, it plays better than random, it is logged."""

import json

import numpy as np
import pytest

from training.data.collect import main as collect_main
from training.data.collect import read_collection_log
from training.data.scripted import BallFollower
from training.data.vector_atari import make_vector_atari


def _pong_frame(ball_row: int, paddle_row: int) -> np.ndarray:
    frame = np.empty((64, 64, 3), np.uint8)
    frame[:] = (144, 72, 17)  # the court
    frame[7:11] = frame[59:] = 236  # the white bars
    frame[paddle_row - 2:paddle_row + 2, 56] = (92, 186, 92)  # the player's paddle
    frame[ball_row, 30] = 236
    return frame


def _breakout_frame(ball_col: int | None, paddle_col: int) -> np.ndarray:
    frame = np.zeros((64, 64, 3), np.uint8)
    frame[17:29, 2:62] = (66, 72, 200)  # bricks
    frame[57, paddle_col - 2:paddle_col + 2] = (200, 72, 72)
    if ball_col is not None:
        frame[40, ball_col] = (200, 72, 72)
    return frame


def test_follows_the_ball_in_synthetic_frames():
    pong = BallFollower("Pong", 6, epsilon=0.0)
    frames = np.stack([_pong_frame(20, 40), _pong_frame(45, 20), _pong_frame(30, 30)])
    assert pong.act(frames).tolist() == [2, 3, 0]  # ball above: RIGHT (up); below: LEFT (down); level: NOOP
    breakout = BallFollower("Breakout", 4, epsilon=0.0)
    frames = np.stack([_breakout_frame(10, 40), _breakout_frame(50, 20), _breakout_frame(None, 30)])
    assert breakout.act(frames).tolist() == [3, 2, 1]  # ball left: LEFT; right: RIGHT; no ball: FIRE


def test_epsilon_mixes_in_every_action():
    player = BallFollower("Pong", 6, epsilon=0.5, seed=0)
    actions = player.act(np.stack([_pong_frame(20, 40)] * 2000))
    assert set(np.unique(actions)) == set(range(6))
    assert 0.55 < np.mean(actions == 2) < 0.65  # half scripted, a sixth of the random half
    with pytest.raises(ValueError, match="scripted games are"):
        BallFollower("Seaquest", 18)
    with pytest.raises(ValueError, match="epsilon"):
        BallFollower("Pong", 6, epsilon=1.5)


@pytest.mark.parametrize("game", ["Pong", "Breakout"])
def test_scores_more_than_random_in_the_real_game(game):
    def net_score(policy_name: str) -> float:
        env = make_vector_atari(game, 8, done_on_life_loss=False, seed=1)
        rng = np.random.default_rng(0)
        n = env.single_action_space.n
        player = BallFollower(game, n, epsilon=0.1, seed=0)
        obs, _ = env.reset(seed=1)
        score = 0.0
        for _ in range(300):  # follow - random: Pong 33, Breakout 42 (600 steps: about twice)
            actions = player.act(obs) if policy_name == "follow" else rng.integers(0, n, 8)
            obs, reward, *_ = env.step(actions)
            score += float(reward.sum())  # Pong: points won minus points lost (longer rallies lose fewer)
        env.close()
        return score

    follow, random = net_score("follow"), net_score("random")
    assert follow > random + 20, (follow, random)


def test_command_line_logs_the_policy(tmp_path):
    out = tmp_path / "data"
    collect_main(["--game", "Breakout", "--out", str(out), "--steps", "300", "--num-envs", "2", "--policy", "follow",
                  "--epsilon", "0.3"])
    collect_main(["--game", "Breakout", "--out", str(out), "--steps", "200", "--append"])
    runs = read_collection_log(out)
    assert [r["policy"] for r in runs] == ["BallFollower", "random"]
    assert runs[0]["epsilon"] == 0.3 and [r["steps"] for r in runs] == [300, 200]
    assert json.loads((out / "collection.json").read_text()) == runs
    with pytest.raises(SystemExit):
        collect_main(["--game", "Seaquest", "--out", str(tmp_path / "s"), "--steps", "10", "--policy", "follow"])
