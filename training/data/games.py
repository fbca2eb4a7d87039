"""What gym-diamond knows of particular games, one entry each: where their objects are, who plays them, what counts.

Fidelity and the gates judge a dream where its game is (the Pong ball, Boxing's boxers), closed loops play each
game's scripted players and count its own events, the transfer gate scores Pong in points: each of these asks
``rules(game)``. Teaching gym-diamond a game (its object detector in ``training.data.objects``, its scripted
player in ``training.data.scripted``) means adding its entry here, and nothing else branches on its name. A game
without an entry (and any non-Atari environment) gets ``GameRules(name)``: no objects, random play, reward
events, mean return.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name

__all__ = ["FOLLOWER_POLICIES", "GameRules", "Located", "games_with", "rules", "scripted_players"]

Located = tuple[np.ndarray, np.ndarray]  # visible (n,) bool, xy (n, 2) float (NaN where unseen)
REWARD_EVENTS = ("positive_rewards", "negative_rewards", "lives_lost")


def _reward_score(rates: Mapping[str, float]) -> float:
    return rates["positive_rewards"] - rates["negative_rewards"]


@dataclass(frozen=True)
class GameRules:
    """One game's knowledge. ``locate(frames)`` finds ``objects`` in uint8 frames (n, 64, 64, 3); ``scripted``
    names the scripted player (policies ``<scripted>`` and ``<scripted>-eps<E>``) and ``make_scripted(num_actions,
    epsilon, seed)`` builds it; ``policies`` are the closed loop's, ranked by ``score`` of the per-1,000-step rates
    of ``events``; ``points`` turns episode returns into the transfer gate's measure, named ``measure``, which an
    agent trained in the dream must lift ``transfer_margin`` above random's. ``goal_lines`` (Pong) are the ball's x
    (64-pixel frames) at or left of which a point is won and at or right of which one is lost: where the real game
    pays a point, the ball has just crossed one. ``paddle_line`` (Pong, Breakout) is where the game returns the ball
    off the player's paddle or lets it through (``training.data.ball_paths``): a column of the 64-pixel frame where
    ``ball_axis`` is 0 (Pong: the ball's x runs toward it), a row where it is 1 (Breakout: its y); the game has done
    one or the other within ``return_horizon`` frames of the ball's approach. ``opponent_line`` (Pong) is the
    column of the computer's paddle, which no action moves: it follows the ball as the ball comes to it."""

    name: str
    objects: tuple[str, ...] = ()
    locate: Callable[[np.ndarray], dict[str, Located]] | None = None
    scripted: str | None = None
    make_scripted: Callable[[int, float, int | None], Any] | None = None
    policies: tuple[str, ...] = ("random",)
    events: tuple[str, ...] = REWARD_EVENTS
    score: Callable[[Mapping[str, float]], float] = _reward_score
    points: Callable[[list[float]], list[float]] = list
    measure: str = "mean return"
    transfer_margin: float = 0.0  # how far above random an agent trained in the dream must score in ``measure``
    goal_lines: tuple[float, float] | None = None
    paddle_line: float | None = None
    ball_axis: int = 0
    return_horizon: int = 4
    opponent_line: float | None = None

    def make_policy(self, policy: str, num_actions: int, seed: int | None = None) -> Any:
        """The scripted player named ``<scripted>`` (epsilon 0) or ``<scripted>-eps<E>``."""
        prefix = policy.split("-eps")[0]
        if prefix != self.scripted or self.make_scripted is None:
            games = scripted_players().get(prefix)
            if games is None:
                raise UserError(f"unknown policy {policy!r}: 'random', or a scripted player "
                                f"({', '.join(map(repr, scripted_players()))}) and its '-eps<epsilon>' variants, e.g. "
                                f"{', '.join(FOLLOWER_POLICIES)}")
            raise UserError(f"policy {policy!r} plays {', '.join(games)} only, not {self.name}")
        epsilon = 0.0 if policy == prefix else float(policy.removeprefix(f"{prefix}-eps"))
        return self.make_scripted(num_actions, epsilon, seed)


def _ball_and_paddle(game: str) -> Callable[[np.ndarray], dict[str, Located]]:
    def locate(frames: np.ndarray) -> dict[str, Located]:
        from training.data.objects import find_objects

        objects = find_objects(game, frames)
        return {thing: objects.of(thing) for thing in ("ball", "paddle")}

    return locate


def _boxers(frames: np.ndarray) -> dict[str, Located]:
    from training.data.objects import find_boxers

    boxers = find_boxers(frames)
    return {"player": (boxers.player_visible, boxers.player_xy), "opponent": (boxers.opponent_visible,
                                                                             boxers.opponent_xy)}


def _follower(game: str) -> Callable[[int, float, int | None], Any]:
    def make(num_actions: int, epsilon: float, seed: int | None) -> Any:
        from training.data.scripted import BallFollower

        return BallFollower(game, num_actions, epsilon=epsilon, seed=seed)

    return make


def _chaser(num_actions: int, epsilon: float, seed: int | None) -> Any:
    from training.data.scripted import BoxingChaser

    return BoxingChaser(num_actions, epsilon=epsilon, seed=seed)


FOLLOWER_POLICIES = ("random", "follower", "follower-eps0.25", "follower-eps0.5")

_RULES: dict[str, GameRules] = {
    # Pong: a game ends when a side reaches 21, so points won = 21 for a win, else 21 + the (negative) return
    "Pong": GameRules("Pong", ("ball", "paddle"), _ball_and_paddle("Pong"), "follower", _follower("Pong"),
                      FOLLOWER_POLICIES, ("points_won", "points_lost"),
                      lambda rates: rates["points_won"] - rates["points_lost"],
                      lambda returns: [21.0 if r > 0 else 21.0 + r for r in returns], "points won per game",
                      goal_lines=(6.0, 58.0), paddle_line=56.0, opponent_line=8.0),  # goals lie past the paddles
    "Breakout": GameRules("Breakout", ("ball", "paddle"), _ball_and_paddle("Breakout"), "follower",
                          _follower("Breakout"), FOLLOWER_POLICIES, ("bricks", "lives_lost"),
                          lambda rates: rates["bricks"], transfer_margin=3.0,
                          # the paddle's top row; the ball takes up to 8 frames to come back up, slower than Pong's
                          paddle_line=57.0, ball_axis=1, return_horizon=8),
    # Boxing: the white boxer is the player, the black one the computer
    "Boxing": GameRules("Boxing", ("player", "opponent"), _boxers, "chaser", _chaser,
                        ("random", "chaser", "chaser-eps0.5")),
}


def rules(game: str) -> GameRules:
    """The rules of ``game`` (any spelling of an Atari game's name), or the plain ones of a game without an entry."""
    name = atari_game_name(game)
    return _RULES.get(name, GameRules(name or game)) if name is not None else GameRules(game)


def scripted_players() -> dict[str, tuple[str, ...]]:
    """Each scripted player's name and the games it plays, e.g. ``{"follower": ("Breakout", "Pong"), ...}``."""
    players: dict[str, list[str]] = {}
    for name, game_rules in sorted(_RULES.items()):
        if game_rules.scripted is not None:
            players.setdefault(game_rules.scripted, []).append(name)
    return {player: tuple(games) for player, games in players.items()}


def games_with(field: str) -> tuple[str, ...]:
    """The games whose rules set ``field`` (``"locate"``, ``"scripted"``), sorted: for error messages and help."""
    return tuple(sorted(name for name, r in _RULES.items() if getattr(r, field) is not None))
