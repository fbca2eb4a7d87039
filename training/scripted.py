"""Scripted players that follow the ball, for collecting data that shows the game.

A random policy in Breakout rarely returns the ball, so a world model trained on its data never sees a
brick break; in Pong it never sees a rally. ``BallFollower`` reads the ball and the player's paddle
from the 64x64 observation itself (colour masks, no emulator RAM, so it runs on ale-py's native vector
env) and moves the paddle toward the ball. With probability ``epsilon`` each step it takes a uniform
random action instead, so the data still holds every action in every situation and the world model
learns what each one does.

It implements ``training.agents.Agent`` (``reset(mask)``, ``act(obs)``), batched over environments
with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gym_diamond.atari import game_to_name

__all__ = ["SCRIPTED_GAMES", "BallFollower"]


@dataclass(frozen=True)
class _Layout:
    """Where things are in a 64x64 frame of one game, and which actions move the paddle."""

    axis: int  # 0: the paddle moves along rows (Pong), 1: along columns (Breakout)
    ball_rows: slice
    ball_cols: slice
    paddle_rows: slice
    paddle_cols: slice
    toward_lower: int  # action moving the paddle toward lower row/column indices (up in Pong, left in Breakout)
    toward_higher: int
    serve: int | None  # action that launches the ball when none is in play (FIRE), if the game needs one


_LAYOUTS = {
    # Pong: the player's green paddle is the right one (column ~56); RIGHT moves it up, LEFT down.
    "Pong": _Layout(axis=0, ball_rows=slice(11, 59), ball_cols=slice(9, 54), paddle_rows=slice(11, 59),
                    paddle_cols=slice(54, 59), toward_lower=2, toward_higher=3, serve=None),
    # Breakout: the red paddle runs along row ~57 under the bricks; the ball is red too.
    "Breakout": _Layout(axis=1, ball_rows=slice(30, 55), ball_cols=slice(2, 62), paddle_rows=slice(55, 60),
                        paddle_cols=slice(2, 62), toward_lower=3, toward_higher=2, serve=1),
}
SCRIPTED_GAMES = tuple(sorted(_LAYOUTS))


def _pong_masks(obs: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    frames = obs.astype(np.int16)
    paddle = frames[:, layout.paddle_rows, layout.paddle_cols]
    paddle_mask = paddle[..., 1] > paddle[..., 0] + 30  # green on brown
    ball = frames[:, layout.ball_rows, layout.ball_cols]
    background = np.array([144, 72, 17], dtype=np.int16)
    ball_mask = np.abs(ball - background).sum(-1) > 40
    return ball_mask, paddle_mask


def _breakout_masks(obs: np.ndarray, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    frames = obs.astype(np.int16)

    def red(x: np.ndarray) -> np.ndarray:
        return (x[..., 0] > 40) & (x[..., 0] > 2 * x[..., 1])

    return red(frames[:, layout.ball_rows, layout.ball_cols]), red(frames[:, layout.paddle_rows, layout.paddle_cols])


def _centre(mask: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean index of the true pixels along ``axis`` (1: rows, 2: columns) for each frame; and whether any."""
    counts = mask.sum(axis=(1, 2))
    positions = np.arange(mask.shape[axis], dtype=np.float64)
    weights = mask.sum(axis=3 - axis)  # (n, rows) or (n, cols)
    centre = (weights * positions).sum(1) / np.maximum(counts, 1)
    return centre, counts > 0


class BallFollower:
    """Moves the paddle toward the ball (Pong, Breakout); a random action with probability ``epsilon``.

    ``dead_zone`` is the distance in pixels within which the paddle stays put, so it does not jitter.
    """

    def __init__(self, game: str, num_actions: int, *, epsilon: float = 0.25, dead_zone: float = 1.0,
                 seed: int | None = None) -> None:
        name = game_to_name(game)
        if name not in _LAYOUTS:
            raise ValueError(f"no scripted player for {name}: scripted games are {', '.join(SCRIPTED_GAMES)}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.game, self.layout = name, _LAYOUTS[name]
        self.num_actions, self.epsilon, self.dead_zone = num_actions, epsilon, dead_zone
        self.rng = np.random.default_rng(seed)
        self._masks = _pong_masks if name == "Pong" else _breakout_masks

    def describe(self) -> dict[str, object]:
        """What played, for the provenance of data and of the models trained on it."""
        return {"policy": "BallFollower", "game": self.game, "epsilon": self.epsilon, "dead_zone": self.dead_zone}

    def reset(self, mask: np.ndarray) -> None:
        """The player has no memory: nothing to forget."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        layout = self.layout
        ball_mask, paddle_mask = self._masks(np.asarray(obs), layout)
        axis = 1 if layout.axis == 0 else 2
        ball, ball_seen = _centre(ball_mask, axis)
        paddle, paddle_seen = _centre(paddle_mask, axis)
        offset = (layout.ball_rows if layout.axis == 0 else layout.ball_cols).start - \
            (layout.paddle_rows if layout.axis == 0 else layout.paddle_cols).start
        gap = ball + offset - paddle
        actions = np.zeros(len(obs), dtype=np.int64)  # NOOP
        actions[gap < -self.dead_zone] = layout.toward_lower
        actions[gap > self.dead_zone] = layout.toward_higher
        actions[~(ball_seen & paddle_seen)] = 0
        if layout.serve is not None:
            actions[~ball_seen] = layout.serve
        explore = self.rng.random(len(obs)) < self.epsilon
        return np.where(explore, self.rng.integers(0, self.num_actions, len(obs)), actions)
