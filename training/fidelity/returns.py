"""Does the dream return the ball where the game does? Open-loop dreams of the ball reaching the player's paddle.

The bounce off the player's paddle is Pong's one rule an agent must learn, and a dream that draws it wrong teaches
the wrong game: in closed loop the perfect ball follower of a dream that lets the ball through its paddle loses
every rally it wins in the real game. Open-loop ball figures average it away (the ball is near the paddle in a few
frames of each rally). ``ball_returns`` finds real moments where the ball reaches the player's paddle moving
toward its goal line, splits them by what the game did in the next ``horizon`` frames (*returns*: the ball comes
back; *misses*: it gets by), and dreams the same frames open loop from the real context with the
real actions: a dream that plays the game returns the returns and misses the misses. The returns of fast balls
(more than ``FAST_BALL`` pixels a step toward the paddle, the long rallies a good player has) are counted apart: a
dream can draw the slow bounce and lose the fast one, and the closed loop's good player then loses points the game
does not.

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

__all__ = ["FAST_BALL", "ReturnReport", "ball_returns"]

FAST_BALL = 2.5  # pixels a step toward the paddle above which a ball counts as fast (a long rally's, in Pong)


@dataclass(frozen=True)
class ReturnReport:
    """Of ``returns`` real returns, the dream returned ``returned`` and let ``let_through`` through; of ``misses``
    real misses, it let ``missed`` through and returned ``returned_misses``. ``fast_returns`` of the real returns
    came at more than ``FAST_BALL`` pixels a step, and the dream returned ``fast_returned`` of them. Of the real
    returns it neither returned nor let through, it shows no ball at the last frame in ``dropped``; in the rest it
    holds the ball or sends it back too slowly.

    What a dream does instead of returning tells the closed loop's failure ahead: a real return it lets through is a
    point the player loses in the dream and not in the game; one it neither returns nor lets through is a ball gone
    (dropped or frozen), and after it no point and no serve."""

    returns: int
    returned: int
    misses: int
    missed: int
    let_through: int
    returned_misses: int
    fast_returns: int
    fast_returned: int
    dropped: int

    def return_recall(self) -> float | None:
        return share(self.returned, self.returns)

    def miss_recall(self) -> float | None:
        return share(self.missed, self.misses)

    def fast_return_recall(self) -> float | None:
        """Of the real returns of fast balls, the share the dream returns."""
        return share(self.fast_returned, self.fast_returns)

    def slow_return_recall(self) -> float | None:
        """Of the other real returns, the share the dream returns."""
        return share(self.returned - self.fast_returned, self.returns - self.fast_returns)

    def let_through_share(self) -> float | None:
        """Of the real returns, the share the dream lets through."""
        return share(self.let_through, self.returns)

    def dropped_share(self) -> float | None:
        """Of the real returns, the share whose ball the dream drops: neither returned nor let through, and gone.
        Always 0 in a game that hides the ball it lets through (Breakout): a ball gone reads as let through there."""
        return share(self.dropped, self.returns)

    def returned_miss_share(self) -> float | None:
        """Of the real misses, the share the dream returns."""
        return share(self.returned_misses, self.misses)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"returns": self.returns, "return_drawn": self.return_recall(),
                "return_let_through": self.let_through_share(), "return_dropped": self.dropped_share(),
                "misses": self.misses,
                "miss_drawn": self.miss_recall(), "miss_returned": self.returned_miss_share(),
                "fast_returns": self.fast_returns, "fast_return_drawn": self.fast_return_recall(),
                "slow_return_drawn": self.slow_return_recall()}


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
    returned, let_through, gone = _dreamt_paths(model, dataset, game, returns, seed, horizon, goal_line, batch_size)
    returned_misses, missed, _ = _dreamt_paths(model, dataset, game, misses, seed, horizon, goal_line, batch_size)
    fast = _incoming_speeds(dataset, game, returns) > FAST_BALL
    dropped = gone & ~returned & ~let_through
    return ReturnReport(len(returns), int(returned.sum()), len(misses), int(missed.sum()), int(let_through.sum()),
                        int(returned_misses.sum()), int(fast.sum()), int((returned & fast).sum()), int(dropped.sum()))


def _incoming_speeds(dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]]) -> np.ndarray:
    """Pixels the ball moved toward the paddle into each frame of ``positions`` (the approach's found frame s, whose
    frame s - 1 shows the ball: ``training.data.ball_paths.return_transitions``)."""
    if not positions:
        return np.zeros(0)
    ids = np.array([e for e, _ in positions], np.int64)
    frames = dataset.get_segments(ids, np.array([s - 1 for _, s in positions], np.int64), 1).frames
    return ball_positions(game, frames[:, 1]) - ball_positions(game, frames[:, 0])


def _dreamt_paths(model: WorldModel, dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]], seed: int,
                  horizon: int, goal_line: float | None, batch_size: int
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(returned, missed, ball unseen at the last frame) per dream of ``horizon`` steps from the contexts ending at
    ``positions``."""
    L, device = model.config.denoiser.context_length, model.device
    returned, missed, gone = [np.zeros(0, bool)], [np.zeros(0, bool)], [np.zeros(0, bool)]
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
        returned.append(r)
        missed.append(m)
        gone.append(np.isnan(path[-1]))
    return np.concatenate(returned), np.concatenate(missed), np.concatenate(gone)
