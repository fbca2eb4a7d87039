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

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects, object_game
from training.fidelity.measures import share

__all__ = ["SERVE_PAUSE", "ServeReport", "ball_serves", "serve_transitions"]

SERVE_PAUSE = 5  # frames without the ball before its return counts as a serve


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
    L = model.config.denoiser.context_length
    found: dict[str, list[tuple[int, int]]] = {"serves": [], "pauses": []}
    for e in np.asarray(episode_ids, dtype=np.int64).reshape(-1):
        visible = find_objects(game, dataset.episode(int(e)).frames).ball_visible
        serves, pauses = serve_transitions(visible, L, pause)
        found["serves"] += [(int(e), int(s)) for s in serves]
        found["pauses"] += [(int(e), int(s)) for s in pauses]
    rng = np.random.default_rng(seed)
    serves, pauses = ([positions[i] for i in np.sort(rng.permutation(len(positions))[:samples])]
                      for positions in (found["serves"], found["pauses"]))
    return ServeReport(len(serves), _dreamt_balls(model, dataset, game, serves, seed, batch_size),
                       len(pauses), _dreamt_balls(model, dataset, game, pauses, seed, batch_size))


def _dreamt_balls(model: WorldModel, dataset: EpisodeDataset, game: str, positions: list[tuple[int, int]],
                  seed: int, batch_size: int) -> int:
    """How many of the one-step dreams from the contexts ending at ``positions`` (episode, transition) show a ball."""
    L, device, shown = model.config.denoiser.context_length, model.device, 0
    for i in range(0, len(positions), batch_size):
        batch = positions[i:i + batch_size]
        ids = np.array([e for e, _ in batch], np.int64)
        starts = np.array([s - L + 1 for _, s in batch], np.int64)
        seg = dataset.get_segments(ids, starts, L)  # frames s-L+1..s+1, the actions taken at s-L+1..s
        frames = to_model_frames(torch.as_tensor(seg.frames[:, :L], device=device))
        actions = torch.as_tensor(seg.actions, device=device).long()
        generator = BatchedGenerator(torch.arange(i, i + len(batch)) + seed * 1_000_003, device=device)
        step = model.imagine_step(frames, actions, generator=generator)
        shown += int(find_objects(game, to_uint8_frames(step.next_frame).cpu().numpy()).ball_visible.sum())
    return shown
