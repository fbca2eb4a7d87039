"""benchmarks/opponent_paddle.py: the opponent's paddle in the game and in a dream, over their own frames."""

import json

import numpy as np
import pytest
from helpers import load_benchmark, make_tiny_checkpoint, pong_frame

opponent_paddle = load_benchmark("opponent_paddle")


def test_the_game_keeps_one_paddle_by_the_ball_and_each_dream_gets_a_line(tmp_path, capsys):
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    opponent_paddle.main(["--checkpoint", str(checkpoint), "--steps", "160", "--num-envs", "4"])
    game, dream = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert game["source"] == "game" and dream["source"] == str(checkpoint)
    assert game["frames"] == dream["frames"] == 160
    assert game["seen"] >= 0.5 and game["in_pieces"] <= 0.02  # the game's paddle in one piece (hidden at serves)
    assert game["approaches"] > 0 and game["distance_median"] <= 4  # it meets the ball
    assert set(dream) == set(game)
    assert sum(f["approaches"] for f in game["by_age"].values()) == game["approaches"]  # each in one age band


class TwoPaddles:
    """A stand-in dream of n envs that draws the opponent's paddle twice, the ball running left along row 30."""

    def __init__(self, n: int):
        self.n, self.x = n, 40

    def frames(self) -> np.ndarray:
        frame = pong_frame(self.x)
        frame[14:19, 7] = frame[44:49, 7] = (213, 130, 74)
        return np.repeat(frame[None], self.n, axis=0)

    def reset(self, seed=None):
        return self.frames(), {}

    def step(self, actions):
        self.x = self.x - 4 if self.x > 4 else 40
        no = np.zeros(self.n, bool)
        return self.frames(), np.zeros(self.n), no, no.copy(), {}


def test_a_dream_that_draws_the_paddle_twice_reads_in_pieces():
    figures = opponent_paddle.opponent_figures(TwoPaddles(2), "random", 40, 2)
    assert figures["seen"] == figures["in_pieces"] == 1.0 and figures["frames"] == 40
    assert figures["approaches"] > 0  # the ball comes left past column 12
    young, older = figures["by_age"]["1-25"], figures["by_age"]["26-50"]  # 20 steps an env: all of age 1-20
    assert young["in_pieces"] == 1.0 and young["approaches"] == figures["approaches"]
    assert older == {"in_pieces": None, "approaches": 0, "distance_median": None, "distance_over_4": None}
    assert list(figures["by_age"]) == ["1-25", "26-50", "51-100", "101-200", "201-400", "401-"]


def test_a_checkpoint_of_another_game_is_refused_before_playing(tmp_path):
    checkpoint = make_tiny_checkpoint(tmp_path / "Breakout.safetensors", game="Breakout")
    with pytest.raises(ValueError, match="world model of Breakout: the opponent's paddle is Pong's"):
        opponent_paddle.main(["--checkpoint", str(checkpoint), "--steps", "8"])
