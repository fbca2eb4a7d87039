"""Scripted players that follow the ball, for collecting data that shows the game.

A random policy in Breakout rarely returns the ball, so a world model trained on its data never sees a
brick break; in Pong it never sees a rally. ``BallFollower`` reads the ball and the player's paddle
from the 64x64 observation itself (``training.data.objects``: colour masks, no emulator RAM, so it runs on
ale-py's native vector env) and moves the paddle toward the ball. With probability ``epsilon`` each
step it takes a uniform random action instead, so the data still holds every action in every situation
and the world model learns what each one does.

It implements ``training.data.policies.Agent`` (``reset(mask)``, ``act(obs)``), batched over environments
with numpy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gym_diamond.atari import game_to_name
from gym_diamond.errors import UserError
from training.data.objects import find_boxers, find_objects

__all__ = ["SCRIPTED_GAMES", "BallFollower", "BoxingChaser"]


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
            raise UserError(f"no scripted player for {name}: scripted games are {', '.join(SCRIPTED_GAMES)}")
        if not 0 <= epsilon <= 1:
            raise UserError(f"epsilon must be in [0, 1], got {epsilon}")
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


# Boxing's action set: NOOP FIRE UP RIGHT LEFT DOWN UPRIGHT UPLEFT DOWNRIGHT DOWNLEFT, then the same with FIRE
# (UPFIRE RIGHTFIRE LEFTFIRE DOWNFIRE UPRIGHTFIRE UPLEFTFIRE DOWNRIGHTFIRE DOWNLEFTFIRE)
_MOVES = {(0, 0): 0, (0, -1): 2, (1, 0): 3, (-1, 0): 4, (0, 1): 5, (1, -1): 6, (-1, -1): 7, (1, 1): 8, (-1, 1): 9}
_FIRE = 1
_WITH_FIRE = np.array([1, 1, 10, 11, 12, 13, 14, 15, 16, 17] + list(range(10, 18)), dtype=np.int64)  # action -> +FIRE


class BoxingChaser:
    """Walks to the opponent's row and to ``reach`` pixels beside it, punching within ``punch_range`` pixels on its
    row; a uniform random action with probability ``epsilon``.

    Implements ``training.data.policies.Agent``, batched over environments with numpy.
    """

    def __init__(self, num_actions: int = 18, *, epsilon: float = 0.0, reach: float = 8.0, row_slack: float = 2.0,
                 punch_range: float = 14.0, seed: int | None = None) -> None:
        if num_actions != 18:
            raise UserError(f"Boxing has 18 actions, got num_actions={num_actions}")
        if not 0 <= epsilon <= 1:
            raise UserError(f"epsilon must be in [0, 1], got {epsilon}")
        self.num_actions, self.epsilon, self.reach, self.row_slack = num_actions, epsilon, reach, row_slack
        self.punch_range = punch_range
        self.rng = np.random.default_rng(seed)

    def describe(self) -> dict[str, object]:
        """What played, for the provenance of data and of the models trained on it."""
        return {"policy": "BoxingChaser", "game": "Boxing", "epsilon": self.epsilon, "reach": self.reach}

    def reset(self, mask: np.ndarray) -> None:
        """The player has no memory: nothing to forget."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        boxers = find_boxers(obs)
        dx = boxers.opponent_xy[:, 0] - boxers.player_xy[:, 0]
        dy = boxers.opponent_xy[:, 1] - boxers.player_xy[:, 1]
        seen = boxers.player_visible & boxers.opponent_visible
        dx, dy = np.where(seen, dx, 0.0), np.where(seen, dy, 0.0)
        # horizontally: toward a spot ``reach`` pixels beside the opponent, on the side the player is on
        target_gap = np.where(dx >= 0, self.reach, -self.reach)
        step_x = np.sign(np.where(np.abs(dx - target_gap) > 1.0, dx - target_gap, 0.0)).astype(int)
        step_y = np.sign(np.where(np.abs(dy) > self.row_slack, dy, 0.0)).astype(int)
        actions = np.array([_MOVES[(x, y)] for x, y in zip(step_x, step_y, strict=True)], dtype=np.int64)
        in_reach = seen & (np.abs(dy) <= self.row_slack) & (np.abs(dx) <= self.punch_range)
        actions[in_reach] = _WITH_FIRE[actions[in_reach]]  # punch while closing in
        explore = self.rng.random(len(obs)) < self.epsilon
        return np.where(explore, self.rng.integers(0, self.num_actions, len(obs)), actions)
