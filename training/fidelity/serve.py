"""Does the dream put the ball back in play? One-step serves on real contexts.

After a point Pong leaves the court empty for 15 or 16 steps and then serves; Breakout serves when the player
fires. A dream that never serves stalls after its first point: the closed loop scores nothing more, an agent in it
learns nothing more. Open-loop ball figures miss this (the frames after a serve are few, and a dream that keeps a
ball it is shown scores well on them), and a 4-frame context cannot time Pong's pause: from the model's view the
serve comes at random, about one step in twelve, and a sampler of a few deterministic Euler steps returns close to
the mean next frame, where a one-in-twelve ball is too faint to survive.

``ball_serves`` samples the model's next frame for real contexts of two kinds: *serves*, where the ball has been
away for ``pause`` frames and the real next frame shows it again, and *pauses*, where the real next frame shows no
ball either. A dream that serves like the game draws the ball on most serves and on few pauses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import WorldModel
from gym_diamond.errors import UserError
from training.data.ball_paths import SERVE_PAUSE, serve_moments
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects, object_game
from training.fidelity.measures import share
from training.fidelity.moments import one_step_dreams

__all__ = ["ServeReport", "ball_serves"]


@dataclass(frozen=True)
class ServeReport:
    """Of ``serves`` real serves, ``drawn`` sampled next frames show the ball; of ``pauses`` real transitions where
    the ball stays away, ``phantom`` show one."""

    serves: int
    drawn: int
    pauses: int
    phantom: int

    def recall(self) -> float | None:
        return share(self.drawn, self.serves)

    def phantom_rate(self) -> float | None:
        return share(self.phantom, self.pauses)


@torch.no_grad()
def ball_serves(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                samples: int = 32, seed: int = 0, pause: int = SERVE_PAUSE, batch_size: int = 64) -> ServeReport:
    """Up to ``samples`` real serves and as many pauses of ``episode_ids`` (drawn with ``seed``), each dreamt one
    step ahead from its real context and actions with the model's own sampler and precision (random streams from
    ``seed``); counts the dreamt frames that show the ball (``training.data.objects``: Pong, Breakout)."""
    if dataset.game is None:
        raise UserError("the dataset does not say its game: open it with EpisodeDataset(root, game=...)")
    game = object_game(dataset.game)
    if samples < 1 or batch_size < 1:
        raise UserError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}")
    found = serve_moments(dataset, episode_ids, model.config.denoiser.context_length, pause)
    rng = np.random.default_rng(seed)
    serves, pauses = ([positions[i] for i in np.sort(rng.permutation(len(positions))[:samples])]
                      for positions in (found["serves"], found["pauses"]))
    return ServeReport(len(serves), _dreamt_balls(model, dataset, game, serves, seed, batch_size),
                       len(pauses), _dreamt_balls(model, dataset, game, pauses, seed, batch_size))


def _dreamt_balls(model: WorldModel, dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]],
                  seed: int, batch_size: int) -> int:
    """How many of the one-step dreams from the contexts ending at ``positions`` (episode, transition) show a ball."""
    return sum(int(find_objects(game, dreamt).ball_visible.sum())
               for _, dreamt in one_step_dreams(model, dataset, positions, seed, batch_size))
