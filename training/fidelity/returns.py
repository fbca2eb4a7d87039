"""Does the dream return the ball where the game does? Open-loop dreams of the ball reaching the player's paddle.

The bounce off the player's paddle is Pong's one rule an agent must learn, and a dream that draws it wrong teaches
the wrong game: in closed loop the perfect ball follower of a dream that lets the ball through its paddle loses
every rally it wins in the real game. Open-loop ball figures average it away (the ball is near the paddle in a few
frames of each rally). ``ball_returns`` finds real moments where the ball reaches the player's paddle moving
toward its goal line, splits them by what the game did in the next ``horizon`` frames (*returns*: the ball comes
back; *misses*: it crosses the goal line), and dreams the same frames open loop from the real context with the
real actions: a dream that plays the game returns the returns and misses the misses.

The lines come from ``training.data.games.rules(game)``: ``paddle_line`` (the column of the player's paddle) and
the second of ``goal_lines`` (the ball at or past it has scored against the player). Pong has them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset
from training.data.games import games_with, rules
from training.data.objects import find_objects
from training.fidelity.measures import share

__all__ = ["RETURN_HORIZON", "ReturnReport", "ball_returns", "classify_ball_paths", "return_lines",
           "return_transitions"]

RETURN_HORIZON = 4  # frames after the ball reaches the paddle in which the game has returned it or let it through
APPROACH = (6.0, 2.0)  # the ball this many pixels before the paddle's column, at most and at least


@dataclass(frozen=True)
class ReturnReport:
    """Of ``returns`` real returns, the dream returned ``returned``; of ``misses`` real misses, it let ``missed``
    through."""

    returns: int
    returned: int
    misses: int
    missed: int

    def return_recall(self) -> float | None:
        return share(self.returned, self.returns)

    def miss_recall(self) -> float | None:
        return share(self.missed, self.misses)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"returns": self.returns, "return_drawn": self.return_recall(), "misses": self.misses,
                "miss_drawn": self.miss_recall()}


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


@torch.no_grad()
def ball_returns(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                 samples: int = 32, seed: int = 0, horizon: int = RETURN_HORIZON, batch_size: int = 64
                 ) -> ReturnReport:
    """Up to ``samples`` real returns and as many misses of ``episode_ids`` (drawn with ``seed``), each dreamt
    ``horizon`` steps open loop from its real context with the real actions, the model's own sampler and precision
    (random streams from ``seed``); counts the dreams that return and that miss as the game did."""
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    if samples < 1 or batch_size < 1:
        raise UserError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    game = dataset.game
    paddle_line, goal_line = return_lines(game)
    L = model.config.denoiser.context_length
    found: dict[str, list[tuple[int, int]]] = {"returns": [], "misses": []}
    for e in np.asarray(episode_ids, dtype=np.int64).reshape(-1):
        objects = find_objects(game, dataset.episode(int(e)).frames)
        x = np.where(objects.ball_visible, objects.ball_xy[:, 0], np.nan)
        returns, misses = return_transitions(x, L, paddle_line, goal_line, horizon)
        found["returns"] += [(int(e), int(s)) for s in returns]
        found["misses"] += [(int(e), int(s)) for s in misses]
    rng = np.random.default_rng(seed)
    returns, misses = ([positions[i] for i in np.sort(rng.permutation(len(positions))[:samples])]
                       for positions in (found["returns"], found["misses"]))
    returned = _dreamt_paths(model, dataset, game, returns, seed, horizon, goal_line, batch_size)[0]
    missed = _dreamt_paths(model, dataset, game, misses, seed, horizon, goal_line, batch_size)[1]
    return ReturnReport(len(returns), returned, len(misses), missed)


def _dreamt_paths(model: WorldModel, dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]], seed: int,
                  horizon: int, goal_line: float, batch_size: int) -> tuple[int, int]:
    """(returned, missed) among the dreams of ``horizon`` steps from the contexts ending at ``positions``."""
    L, device = model.config.denoiser.context_length, model.device
    returned = missed = 0
    for i in range(0, len(positions), batch_size):
        batch = positions[i:i + batch_size]
        ids = np.array([e for e, _ in batch], np.int64)
        seg = dataset.get_segments(ids, np.array([s - L + 1 for _, s in batch], np.int64), L - 1 + horizon)
        frames = to_model_frames(torch.as_tensor(seg.frames[:, :L], device=device))
        actions = torch.as_tensor(seg.actions, device=device).long()  # taken at frames s-L+1 .. s+horizon-1
        start = find_objects(game, seg.frames[:, L - 1])
        generator = BatchedGenerator(torch.arange(i, i + len(batch)) + seed * 1_000_003, device=device)
        path = []
        for h in range(horizon):
            step = model.imagine_step(frames, actions[:, h:h + L], generator=generator)
            seen = find_objects(game, to_uint8_frames(step.next_frame).cpu().numpy())
            path.append(np.where(seen.ball_visible, seen.ball_xy[:, 0], np.nan))
            frames = torch.cat([frames[:, 1:], step.next_frame[:, None]], dim=1)
        r, m = classify_ball_paths(start.ball_xy[:, 0], np.stack(path, axis=1), goal_line)
        returned, missed = returned + int(r.sum()), missed + int(m.sum())
    return returned, missed
