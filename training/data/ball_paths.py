"""The ball at the player's paddle, where the game returns it or lets it through, and the ball's serves.

Pure numpy on the ball's position per frame (``training.data.objects``) along the axis that runs toward the player's
paddle, for the fidelity measure that asks a dream to return the ball where the game does
(``training.fidelity.returns``) and for the trainer's oversampling of those moments
(``--denoiser-return-oversampling``). The geometry comes from ``training.data.games.rules(game)``: Pong's ball runs
along x toward the paddle's column and, let through, is seen at or past the goal line; Breakout's runs down its y
toward the paddle's row and, let through, is hidden under the paddle (the detector reads no ball below it).
Serves (the ball back after frames without it) come from its visibility alone, for ``training.fidelity.serve`` and
``--denoiser-serve-oversampling``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset
from training.data.games import games_with, rules
from training.data.objects import find_objects

__all__ = ["APPROACH", "OPPONENT_REACH", "SERVE_PAUSE", "ReturnGeometry", "ball_positions", "classify_ball_paths",
           "opponent_moments", "opponent_transitions", "paddle_moments", "return_geometry", "return_transitions",
           "serve_moments", "serve_transitions"]

APPROACH = (6.0, 2.0)  # the ball this many pixels before the paddle's line, at most and at least
SERVE_PAUSE = 5  # frames without the ball before its return counts as a serve
OPPONENT_REACH = 24  # columns before the opponent's paddle within which the ball, coming to it, is followed


@dataclass(frozen=True)
class ReturnGeometry:
    """Where a game's ball meets the player's paddle. ``axis`` (0: x, 1: y) runs toward the paddle, which lies at
    ``paddle_line``; a ball seen at or past ``goal_line`` has got by; where the game hides such a ball (``goal_line``
    None), one unseen at the last of the ``horizon`` frames without having come back has. Within ``horizon`` frames
    of its approach the game has returned the ball or let it through."""

    axis: int
    paddle_line: float
    goal_line: float | None
    horizon: int


def return_geometry(game: str) -> ReturnGeometry:
    """``game``'s ball-and-paddle geometry; a clear error for a game without a known paddle line."""
    game_rules = rules(game)
    if game_rules.paddle_line is None:
        raise UserError(f"ball returns are measured where the player's paddle is known "
                        f"({', '.join(games_with('paddle_line'))}), not in {game}")
    goal = None if game_rules.goal_lines is None else game_rules.goal_lines[1]
    return ReturnGeometry(game_rules.ball_axis, game_rules.paddle_line, goal, game_rules.return_horizon)


def classify_ball_paths(start: np.ndarray, path: np.ndarray, goal_line: float | None
                        ) -> tuple[np.ndarray, np.ndarray]:
    """(returned, missed) for balls at ``start`` (n,) followed over ``path`` (n, horizon) along the axis toward the
    paddle, NaN where unseen. ``goal_line`` given: missed if seen at or past it; returned if not, and seen more than
    a pixel back from its start. None (the game hides a ball it let through): returned as before; missed if not
    returned and unseen at the path's last frame."""
    path = np.asarray(path, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN (no ball) compares False
        back = (path < np.asarray(start, dtype=np.float64)[:, None] - 1).any(axis=1)
        if goal_line is None:
            return back, ~back & np.isnan(path[:, -1])
        missed = (path >= goal_line).any(axis=1)
        return ~missed & back, missed


def return_transitions(ball: np.ndarray, context_length: int, paddle_line: float, goal_line: float | None,
                       horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``s`` of one episode (``ball``: (T + 1,) the ball's position per frame along the axis toward the
    paddle, NaN where unseen) where the ball, moving toward the paddle, is 2 to 6 pixels before its line, with
    ``context_length`` real frames up to s and ``horizon`` frames after it: (returns, misses) by what the game did in
    those frames (``classify_ball_paths``)."""
    if context_length < 1 or horizon < 1:
        raise UserError(f"context_length and horizon must be >= 1, got {context_length} and {horizon}")
    x = np.asarray(ball, dtype=np.float64)
    s = np.arange(max(context_length - 1, 1), len(x) - horizon)
    if s.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        near = (x[s] >= paddle_line - APPROACH[0]) & (x[s] <= paddle_line - APPROACH[1]) & (x[s] > x[s - 1])
    s = s[near]
    paths = np.stack([x[s + h] for h in range(1, horizon + 1)], axis=1) if s.size else np.zeros((0, horizon))
    returned, missed = classify_ball_paths(x[s], paths, goal_line)
    return s[returned], s[missed]


def ball_positions(game: str, frames: np.ndarray) -> np.ndarray:
    """The ball's position along ``game``'s axis toward the player's paddle in each uint8 frame (n, 64, 64, 3),
    NaN where none is seen."""
    return find_objects(game, frames).ball_xy[:, return_geometry(game).axis]  # NaN where the ball is not seen


def paddle_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], context_length: int,
                   horizon: int | None = None) -> dict[str, list[tuple[int, int]]]:
    """The (episode, frame) pairs of ``episode_ids`` where the game returns the ball off the player's paddle
    (``"returns"``) or lets it through (``"misses"``), as ``return_transitions`` finds them (``horizon``: the game's
    ``return_horizon`` by default)."""
    game = _game_of(dataset)
    geometry = return_geometry(game)
    horizon = geometry.horizon if horizon is None else horizon
    return _episode_moments(dataset, episode_ids, ("returns", "misses"), lambda frames: return_transitions(
        ball_positions(game, frames), context_length, geometry.paddle_line, geometry.goal_line, horizon))


def serve_transitions(ball_visible: np.ndarray, context_length: int,
                      pause: int = SERVE_PAUSE) -> tuple[np.ndarray, np.ndarray]:
    """Transitions ``s`` (frame s to frame s + 1) of one episode whose ``context_length`` frames up to s are real,
    with the ball absent from the last ``pause`` of them: (serves, where frame s + 1 shows the ball; pauses, where it
    does not). ``ball_visible``: (T + 1,) bool, one per frame."""
    if pause < 1 or context_length < 1:
        raise UserError(f"pause and context_length must be >= 1, got {pause} and {context_length}")
    visible = np.asarray(ball_visible, dtype=bool)
    last = len(visible) - 2  # the last transition
    first = max(context_length, pause) - 1
    if last < first:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    absent = np.convolve(~visible, np.ones(pause, np.int64), mode="valid") == pause  # [i] over frames i..i+pause-1
    s = np.arange(first, last + 1)
    away = absent[s - pause + 1]
    return s[away & visible[s + 1]], s[away & ~visible[s + 1]]


def serve_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], context_length: int,
                  pause: int = SERVE_PAUSE) -> dict[str, list[tuple[int, int]]]:
    """The (episode, transition) pairs of ``episode_ids`` where the ball, away for ``pause`` frames, comes back
    (``"serves"``) or stays away (``"pauses"``), as ``serve_transitions`` finds them."""
    game = _game_of(dataset)
    return _episode_moments(dataset, episode_ids, ("serves", "pauses"), lambda frames: serve_transitions(
        find_objects(game, frames).ball_visible, context_length, pause))


def opponent_transitions(ball_x: np.ndarray, context_length: int, opponent_line: float,
                         horizon: int) -> np.ndarray:
    """Frames ``s`` of one episode (``ball_x``: (T + 1,) the ball's column per frame, NaN where unseen) where the
    ball comes towards the opponent's paddle at ``opponent_line`` (its column less than the frame before), 2 to
    ``OPPONENT_REACH`` columns before it, with ``context_length`` real frames up to s and ``horizon`` after it."""
    if context_length < 1 or horizon < 1:
        raise UserError(f"context_length and horizon must be >= 1, got {context_length} and {horizon}")
    x = np.asarray(ball_x, dtype=np.float64)
    s = np.arange(max(context_length - 1, 1), len(x) - horizon)
    with np.errstate(invalid="ignore"):
        coming = ((x[s] >= opponent_line + APPROACH[1]) & (x[s] <= opponent_line + OPPONENT_REACH)
                  & (x[s] < x[s - 1]))
    return s[coming]


def opponent_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], context_length: int,
                     horizon: int | None = None) -> list[tuple[int, int]]:
    """The (episode, frame) pairs of ``episode_ids`` where the ball comes to the opponent's paddle, as
    ``opponent_transitions`` finds them (``horizon``: the game's ``return_horizon`` by default); a clear error for
    a game without an opponent's paddle (``GameRules.opponent_line``)."""
    game = _game_of(dataset)
    game_rules = rules(game)
    if game_rules.opponent_line is None:
        raise UserError(f"the ball coming to the opponent's paddle is known where the game has one "
                        f"({', '.join(games_with('opponent_line'))}), not in {game}")
    horizon = game_rules.return_horizon if horizon is None else horizon
    found = _episode_moments(dataset, episode_ids, ("approaches",), lambda frames: (opponent_transitions(
        find_objects(game, frames).ball_xy[:, 0], context_length, game_rules.opponent_line, horizon),))
    return found["approaches"]


def _episode_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], kinds: tuple[str, ...],
                     transitions: Callable[[np.ndarray], tuple[np.ndarray, ...]]) -> dict[str, list[tuple[int, int]]]:
    """(episode, frame) pairs of each of ``kinds``, from ``transitions`` of each episode's frames (one array each)."""
    found: dict[str, list[tuple[int, int]]] = {kind: [] for kind in kinds}
    for e in np.asarray(episode_ids, dtype=np.int64).reshape(-1):
        for kind, steps in zip(kinds, transitions(dataset.episode(int(e)).frames), strict=True):
            found[kind] += [(int(e), int(s)) for s in steps]
    return found


def _game_of(dataset: EpisodeDataset) -> str:
    """The game ``dataset`` says it holds; a clear error where it does not say."""
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    return dataset.game
