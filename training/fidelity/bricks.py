"""Does the dream break Breakout's bricks where the game does, and only there? One-step breaks on real contexts.

Breakout pays for bricks, and a brick is 3 x 2 pixels of the frame: PSNR hardly moves when a dream keeps a brick the
ball hit, or breaks one it never touched, and the open-loop ball figures say nothing of the wall. A dream that keeps
struck bricks gives an agent no reason to aim; one that breaks bricks of its own pays for nothing (the reward model
reads the wall it is shown).

``brick_breaks`` samples the model's next frame for real contexts of two kinds: *breaks*, where the real next frame
shows fewer bricks than the context's last (``training.data.bricks.brick_wall``), and *steady* ones, where it shows the
same wall. A dream that breaks like the game draws the real next wall, brick for brick, on most breaks and changes
it on few steady steps. The game shows a break a step after it pays for it about a third of the time, so breaks are
found in the frames, not in the rewards.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import WorldModel
from gym_diamond.atari import game_to_name
from gym_diamond.errors import UserError
from training.data.bricks import brick_wall
from training.data.dataset import EpisodeDataset
from training.fidelity.measures import share
from training.fidelity.moments import one_step_dreams

__all__ = ["BrickReport", "brick_breaks", "brick_moments"]


@dataclass(frozen=True)
class BrickReport:
    """Of ``breaks`` real steps that break bricks, ``drawn`` dreamt next frames show the real next wall; of ``steady``
    real steps that keep the wall, ``phantom`` dreamt next frames show another."""

    breaks: int
    drawn: int
    steady: int
    phantom: int

    def recall(self) -> float | None:
        return share(self.drawn, self.breaks)

    def phantom_rate(self) -> float | None:
        return share(self.phantom, self.steady)


def brick_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int],
                  context_length: int) -> dict[str, list[tuple[int, int]]]:
    """The (episode, s) of every real step s -> s+1 of ``episode_ids`` with a full context (s >= context_length - 1)
    that breaks bricks (``"breaks"``: a brick of frame s gone in frame s+1) or keeps the wall (``"steady"``)."""
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    if game_to_name(dataset.game) != "Breakout":
        raise UserError(f"bricks are Breakout's: the dataset is of {dataset.game}")
    found: dict[str, list[tuple[int, int]]] = {"breaks": [], "steady": []}
    for e in map(int, episode_ids):
        walls = brick_wall(dataset.episode(e).frames)
        broke = (walls[:-1] & ~walls[1:]).any((1, 2))
        kept = (walls[:-1] == walls[1:]).all((1, 2))
        for kind, steps in (("breaks", broke), ("steady", kept)):
            found[kind].extend((e, int(s)) for s in np.flatnonzero(steps) if s >= context_length - 1)
    return found


@torch.no_grad()
def brick_breaks(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                 samples: int = 32, seed: int = 0, batch_size: int = 64) -> BrickReport:
    """Up to ``samples`` real breaks and as many steady steps of ``episode_ids`` (drawn with ``seed``), each dreamt
    one step ahead from its real context and actions with the model's own sampler and precision (random streams
    from ``seed``); counts the dreamt walls that match the real next frame's (breaks) or differ from it (steady)."""
    if samples < 1 or batch_size < 1:
        raise UserError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    found = brick_moments(dataset, episode_ids, model.config.denoiser.context_length)
    rng = np.random.default_rng(seed)
    breaks, steady = ([positions[i] for i in np.sort(rng.permutation(len(positions))[:samples])]
                      for positions in (found["breaks"], found["steady"]))
    return BrickReport(len(breaks), _walls_as_the_game(model, dataset, breaks, seed, batch_size),
                       len(steady), len(steady) - _walls_as_the_game(model, dataset, steady, seed, batch_size))


def _walls_as_the_game(model: WorldModel, dataset: EpisodeDataset, positions: list[tuple[int, int]], seed: int,
                       batch_size: int) -> int:
    """How many of the one-step dreams from the contexts ending at ``positions`` show the real next frame's wall."""
    return sum(int((brick_wall(dreamt) == brick_wall(real)).all((1, 2)).sum())
               for real, dreamt in one_step_dreams(model, dataset, positions, seed, batch_size))
