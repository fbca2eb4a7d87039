"""Scripted players that follow the ball, for collecting data that shows the game.

A random policy in Breakout rarely returns the ball, so a world model trained on its data never sees a
brick break; in Pong it never sees a rally. ``BallFollower`` reads the ball and the player's paddle
from the 64x64 observation itself (``training.objects``: colour masks, no emulator RAM, so it runs on
ale-py's native vector env) and moves the paddle toward the ball. With probability ``epsilon`` each
step it takes a uniform random action instead, so the data still holds every action in every situation
and the world model learns what each one does.

It implements ``training.agents.Agent`` (``reset(mask)``, ``act(obs)``), batched over environments
with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gym_diamond.atari import game_to_name
from training.objects import find_objects

__all__ = ["SCRIPTED_GAMES", "BallFollower"]


@dataclass(frozen=True)
class _Layout:
    """Along which axis the paddle moves in one game, and which actions move it."""

    axis: int  # 0: the paddle moves along columns (x: Breakout), 1: along rows (y: Pong), as in Objects' (x, y)
    toward_lower: int  # action moving the paddle toward lower row/column indices (up in Pong, left in Breakout)
    toward_higher: int
    serve: int | None  # action that launches the ball when none is in play (FIRE), if the game needs one


_LAYOUTS = {
    # Pong: the player's paddle is the right one; RIGHT moves it up, LEFT down.
    "Pong": _Layout(axis=1, toward_lower=2, toward_higher=3, serve=None),
    # Breakout: the paddle runs along the bottom under the bricks.
    "Breakout": _Layout(axis=0, toward_lower=3, toward_higher=2, serve=1),
}
SCRIPTED_GAMES = tuple(sorted(_LAYOUTS))


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

    def describe(self) -> dict[str, object]:
        """What played, for the provenance of data and of the models trained on it."""
        return {"policy": "BallFollower", "game": self.game, "epsilon": self.epsilon, "dead_zone": self.dead_zone}

    def reset(self, mask: np.ndarray) -> None:
        """The player has no memory: nothing to forget."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        layout = self.layout
        objects = find_objects(self.game, np.asarray(obs))
        gap = objects.ball_xy[:, layout.axis] - objects.paddle_xy[:, layout.axis]  # NaN where either is unseen
        ball_seen = objects.ball_visible
        actions = np.zeros(len(obs), dtype=np.int64)  # NOOP
        actions[gap < -self.dead_zone] = layout.toward_lower
        actions[gap > self.dead_zone] = layout.toward_higher
        actions[~(ball_seen & objects.paddle_visible)] = 0
        if layout.serve is not None:
            actions[~ball_seen] = layout.serve
        explore = self.rng.random(len(obs)) < self.epsilon
        return np.where(explore, self.rng.integers(0, self.num_actions, len(obs)), actions)
