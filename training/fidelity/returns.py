"""Does the dream return the ball where the game does? Open-loop dreams of the ball reaching the player's paddle.

The bounce off the player's paddle is Pong's one rule an agent must learn, and a dream that draws it wrong teaches
the wrong game: in closed loop the perfect ball follower of a dream that lets the ball through its paddle loses
every rally it wins in the real game. Open-loop ball figures average it away (the ball is near the paddle in a few
frames of each rally). ``ball_returns`` finds real moments where the ball reaches the player's paddle moving
toward its goal line, splits them by what the game did in the next ``horizon`` frames (*returns*: the ball comes
back; *misses*: it gets by), and dreams the same frames open loop from the real context with the
real actions: a dream that plays the game returns the returns and misses the misses.

The moments are found by ``training.data.ball_paths`` (Pong, Breakout).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.errors import UserError
from training.data.ball_paths import ball_positions, classify_ball_paths, paddle_moments, return_geometry
from training.data.dataset import EpisodeDataset
from training.fidelity.measures import share

__all__ = ["ReturnReport", "ball_returns"]


@dataclass(frozen=True)
class ReturnReport:
    """Of ``returns`` real returns, the dream returned ``returned`` and let ``let_through`` through; of ``misses``
    real misses, it let ``missed`` through and returned ``returned_misses``.

    What a dream does instead of returning tells the closed loop's failure ahead: a real return it lets through is a
    point the player loses in the dream and not in the game; one it neither returns nor lets through is a ball gone
    (dropped or frozen), and after it no point and no serve."""

    returns: int
    returned: int
    misses: int
    missed: int
    let_through: int
    returned_misses: int

    def return_recall(self) -> float | None:
        return share(self.returned, self.returns)

    def miss_recall(self) -> float | None:
        return share(self.missed, self.misses)

    def let_through_share(self) -> float | None:
        """Of the real returns, the share the dream lets through."""
        return share(self.let_through, self.returns)

    def returned_miss_share(self) -> float | None:
        """Of the real misses, the share the dream returns."""
        return share(self.returned_misses, self.misses)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"returns": self.returns, "return_drawn": self.return_recall(),
                "return_let_through": self.let_through_share(), "misses": self.misses,
                "miss_drawn": self.miss_recall(), "miss_returned": self.returned_miss_share()}


@torch.no_grad()
def ball_returns(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                 samples: int = 32, seed: int = 0, horizon: int | None = None, batch_size: int = 64
                 ) -> ReturnReport:
    """Up to ``samples`` real returns and as many misses of ``episode_ids`` (drawn with ``seed``), each dreamt
    ``horizon`` steps (the game's ``return_horizon`` by default) open loop from its real context with the real
    actions, the model's own sampler and precision (random streams from ``seed``); counts the dreams that return and
    that miss as the game did."""
    if samples < 1 or batch_size < 1:
        raise UserError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    found = paddle_moments(dataset, episode_ids, model.config.denoiser.context_length, horizon)  # checks the game
    game = dataset.game
    geometry = return_geometry(game)
    horizon = geometry.horizon if horizon is None else horizon
    goal_line = geometry.goal_line
    rng = np.random.default_rng(seed)
    returns, misses = ([positions[i] for i in np.sort(rng.permutation(len(positions))[:samples])]
                       for positions in (found["returns"], found["misses"]))
    returned, let_through = _dreamt_paths(model, dataset, game, returns, seed, horizon, goal_line, batch_size)
    returned_misses, missed = _dreamt_paths(model, dataset, game, misses, seed, horizon, goal_line, batch_size)
    return ReturnReport(len(returns), returned, len(misses), missed, let_through, returned_misses)


def _dreamt_paths(model: WorldModel, dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]], seed: int,
                  horizon: int, goal_line: float | None, batch_size: int) -> tuple[int, int]:
    """(returned, missed) among the dreams of ``horizon`` steps from the contexts ending at ``positions``."""
    L, device = model.config.denoiser.context_length, model.device
    returned = missed = 0
    for i in range(0, len(positions), batch_size):
        batch = positions[i:i + batch_size]
        ids = np.array([e for e, _ in batch], np.int64)
        seg = dataset.get_segments(ids, np.array([s - L + 1 for _, s in batch], np.int64), L - 1 + horizon)
        frames = to_model_frames(torch.as_tensor(seg.frames[:, :L], device=device))
        actions = torch.as_tensor(seg.actions, device=device).long()  # taken at frames s-L+1 .. s+horizon-1
        start = ball_positions(game, seg.frames[:, L - 1])
        generator = BatchedGenerator(torch.arange(i, i + len(batch)) + seed * 1_000_003, device=device)
        path = []
        for h in range(horizon):
            step = model.imagine_step(frames, actions[:, h:h + L], generator=generator)
            path.append(ball_positions(game, to_uint8_frames(step.next_frame).cpu().numpy()))
            frames = torch.cat([frames[:, 1:], step.next_frame[:, None]], dim=1)
        r, m = classify_ball_paths(start, np.stack(path, axis=1), goal_line)
        returned, missed = returned + int(r.sum()), missed + int(m.sum())
    return returned, missed
