"""The ball at the player's paddle: where, in a ball's path, the game returns it or lets it through.

Pure numpy on the ball's column per frame (``training.data.objects``), for the fidelity measure that asks a dream to
return the ball where the game does (``training.fidelity.returns``) and for the trainer's oversampling of those
moments (``--denoiser-return-oversampling``). The lines come from ``training.data.games.rules(game)``:
``paddle_line`` (the column of the player's paddle) and the second of ``goal_lines`` (the ball at or past it has
scored against the player). Pong has them.
"""

from __future__ import annotations

import numpy as np

from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset
from training.data.games import games_with, rules
from training.data.objects import find_objects

__all__ = ["APPROACH", "RETURN_HORIZON", "ball_columns", "classify_ball_paths", "paddle_moments", "return_lines",
           "return_transitions"]

RETURN_HORIZON = 4  # frames after the ball reaches the paddle in which the game has returned it or let it through
APPROACH = (6.0, 2.0)  # the ball this many pixels before the paddle's column, at most and at least


def return_lines(game: str) -> tuple[float, float]:
    """(paddle_line, goal_line) of ``game``; a clear error for a game without them."""
    game_rules = rules(game)
    if game_rules.paddle_line is None or game_rules.goal_lines is None:
        raise UserError(f"ball returns are measured where the player's paddle and goal line are known "
                        f"({', '.join(games_with('paddle_line'))}), not in {game}")
    return game_rules.paddle_line, game_rules.goal_lines[1]


def classify_ball_paths(start_x: np.ndarray, path_x: np.ndarray, goal_line: float) -> tuple[np.ndarray, np.ndarray]:
    """(returned, missed) for balls at ``start_x`` (n,) followed over ``path_x`` (n, horizon), NaN where unseen:
    missed if seen at or past ``goal_line``; returned if not, and seen more than a pixel back from its start."""
    path = np.asarray(path_x, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # NaN (no ball) compares False
        missed = (path >= goal_line).any(axis=1)
        returned = ~missed & (path < np.asarray(start_x, dtype=np.float64)[:, None] - 1).any(axis=1)
    return returned, missed


def return_transitions(ball_x: np.ndarray, context_length: int, paddle_line: float, goal_line: float,
                       horizon: int = RETURN_HORIZON) -> tuple[np.ndarray, np.ndarray]:
    """Frames ``s`` of one episode (``ball_x``: (T + 1,) the ball's column per frame, NaN where unseen) where the
    ball, moving toward the goal line, is 2 to 6 pixels before the paddle's column, with ``context_length`` real
    frames up to s and ``horizon`` frames after it: (returns, misses) by what the game did in those frames."""
    if context_length < 1 or horizon < 1:
        raise UserError(f"context_length and horizon must be >= 1, got {context_length} and {horizon}")
    x = np.asarray(ball_x, dtype=np.float64)
    s = np.arange(max(context_length - 1, 1), len(x) - horizon)
    if s.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        near = (x[s] >= paddle_line - APPROACH[0]) & (x[s] <= paddle_line - APPROACH[1]) & (x[s] > x[s - 1])
    s = s[near]
    paths = np.stack([x[s + h] for h in range(1, horizon + 1)], axis=1) if s.size else np.zeros((0, horizon))
    returned, missed = classify_ball_paths(x[s], paths, goal_line)
    return s[returned], s[missed]


def ball_columns(game: str, frames: np.ndarray) -> np.ndarray:
    """The ball's column in each uint8 frame (n, 64, 64, 3), NaN where none is seen."""
    return find_objects(game, frames).ball_xy[:, 0]  # NaN where the ball is not seen


def paddle_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], context_length: int,
                   horizon: int = RETURN_HORIZON) -> dict[str, list[tuple[int, int]]]:
    """The (episode, frame) pairs of ``episode_ids`` where the game returns the ball off the player's paddle
    (``"returns"``) or lets it through (``"misses"``), as ``return_transitions`` finds them."""
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    paddle_line, goal_line = return_lines(dataset.game)
    found: dict[str, list[tuple[int, int]]] = {"returns": [], "misses": []}
    for e in np.asarray(episode_ids, dtype=np.int64).reshape(-1):
        x = ball_columns(dataset.game, dataset.episode(int(e)).frames)
        returns, misses = return_transitions(x, context_length, paddle_line, goal_line, horizon)
        found["returns"] += [(int(e), int(s)) for s in returns]
        found["misses"] += [(int(e), int(s)) for s in misses]
    return found
