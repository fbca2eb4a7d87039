"""Where in a bounce does the dream lose the ball, and could any sampler keep it? Each step of real returns dreamt
from the real frames before it.

``training.fidelity.returns`` dreams a return open loop over the game's horizon: a ball lost at the bounce and one
lost a step later read alike, and each dreamt step's error feeds the next. Here every step after the ball's approach
to the player's paddle is dreamt once from the real frames up to it (teacher forcing), so each step's row says how
often the model draws the ball where the game draws it with nothing of its own before; and the denoiser is applied
once more to the real next frame with noise of std sigma added, as ``training.fidelity.measures.ball_shown_by_sigma``
does on any frame. A ball the denoiser erases even when the noisy frame shows it plainly (sigma 0.5) is a ball the
network has not learnt to keep there: more Euler steps, churn or another start cannot bring it back, more training
or more network can.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from gym_diamond.errors import UserError
from training.data.ball_paths import paddle_moments, return_geometry
from training.data.dataset import EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.measures import (
    OBJECT_TOLERANCE,
    ObjectScore,
    checked_probe,
    denoise_real_frame,
    probe_noise,
    rounded_share,
    score_object,
)
from training.runtime.modes import evaluating

__all__ = ["HINT_SIGMAS", "BounceStep", "BounceStepsReport", "HintedFrames", "bounce_steps", "hinted_frames"]

HINT_SIGMAS = (5.0, 2.0, 1.0, 0.5)  # from the sampler's sigma_max (5) to noise through which the ball shows plainly


@dataclass(frozen=True)
class BounceStep:
    """Step ``step`` after the approach (1: the frame after it): the one-step dream's ball (``dreamt``, of the real
    frames that show one), and per noise level the denoiser's estimate's from the noisy real frame (``hinted``)."""

    step: int
    dreamt: ObjectScore
    hinted: dict[float, ObjectScore]

    def to_dict(self) -> dict[str, object]:
        real = self.dreamt.real
        return {"step": self.step, "real": real, "shown": rounded_share(self.dreamt.shown, real),
                "within": rounded_share(self.dreamt.within, real),
                "hinted_within": {str(s): rounded_share(score.within, score.real) for s, score in self.hinted.items()}}


@dataclass(frozen=True)
class BounceStepsReport:
    """``returns`` real returns, one ``BounceStep`` per step after their approach."""

    returns: int
    steps: tuple[BounceStep, ...]

    def to_dict(self) -> dict[str, object]:
        return {"returns": self.returns, "steps": [step.to_dict() for step in self.steps]}


@torch.no_grad()
def bounce_steps(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *,
                 samples: int = 32, seed: int = 0, sigmas: tuple[float, ...] | list[float] = HINT_SIGMAS,
                 batch_size: int = 64, tolerance: float = OBJECT_TOLERANCE) -> BounceStepsReport:
    """Up to ``samples`` real returns of ``episode_ids`` (drawn with ``seed``), each step of the game's return
    horizon after the approach dreamt one step from the real context and actions (the model's own sampler and
    precision, random streams from ``seed``), and denoised once from the real next frame plus noise of each std in
    ``sigmas`` (the same noise at every level and step)."""
    sigmas = checked_probe(samples, batch_size, sigmas)
    L, device, denoiser = model.config.denoiser.context_length, model.device, model.denoiser
    moments = _return_moments(dataset, episode_ids, L, samples, seed)  # checks the game
    game, horizon = dataset.game, return_geometry(dataset.game).horizon
    noise = probe_noise(model, len(moments), seed)
    dreamt = np.zeros((horizon, 3), np.int64)  # real, shown, within
    hinted = {s: np.zeros((horizon, 3), np.int64) for s in sigmas}
    with evaluating(denoiser):
        for i in range(0, len(moments), batch_size):
            batch = moments[i:i + batch_size]
            ids = np.array([e for e, _ in batch], np.int64)
            seg = dataset.get_segments(ids, np.array([s - L + 1 for _, s in batch], np.int64), L - 1 + horizon)
            frames = to_model_frames(torch.as_tensor(seg.frames, device=device))  # frames s-L+1 .. s+horizon
            actions = torch.as_tensor(seg.actions, device=device).long()
            generator = BatchedGenerator(torch.arange(i, i + len(batch)) + seed * 1_000_003, device=device)
            for h in range(horizon):
                context, target, acts = frames[:, h:h + L], frames[:, h + L], actions[:, h:h + L]
                real = find_objects(game, seg.frames[:, h + L]).of("ball")
                step = model.imagine_step(context, acts, generator=generator)
                dreamt[h] += _counts(real, _ball(game, step.next_frame), tolerance)
                for sigma in sigmas:
                    estimate = denoise_real_frame(model, target, noise[i:i + len(batch)], sigma, context, acts)
                    hinted[sigma][h] += _counts(real, _ball(game, estimate), tolerance)
    return BounceStepsReport(len(moments), tuple(
        BounceStep(h + 1, ObjectScore(*map(int, dreamt[h])), {s: ObjectScore(*map(int, hinted[s][h])) for s in sigmas})
        for h in range(horizon)))


@dataclass(frozen=True)
class HintedFrames:
    """Per real return, its ``frames`` (n, L + 1, 64, 64, 3) uint8: the L real frames up to a step and the real frame
    of that step; and the denoiser's ``estimates`` of that frame from it plus noise (n, 64, 64, 3) uint8."""

    frames: np.ndarray
    estimates: np.ndarray


@torch.no_grad()
def hinted_frames(model: WorldModel, dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], *, step: int,
                  sigma: float, samples: int = 32, seed: int = 0, batch_size: int = 64) -> HintedFrames:
    """The frames behind ``bounce_steps``' share at ``step`` and ``sigma`` (the same returns and noise for the same
    ``samples`` and ``seed``), to look at before believing it."""
    (sigma,) = checked_probe(samples, batch_size, [sigma])
    L, horizon = model.config.denoiser.context_length, return_geometry(dataset.game).horizon
    if not 1 <= step <= horizon:
        raise UserError(f"step must be 1 to {horizon} (the return horizon of {dataset.game}), got {step}")
    moments = _return_moments(dataset, episode_ids, L, samples, seed)
    noise = probe_noise(model, len(moments), seed)
    frames, estimates = [np.zeros((0, L + 1, 64, 64, 3), np.uint8)], [np.zeros((0, 64, 64, 3), np.uint8)]
    with evaluating(model.denoiser):
        for i in range(0, len(moments), batch_size):
            batch = moments[i:i + batch_size]
            seg = dataset.get_segments(np.array([e for e, _ in batch], np.int64),
                                       np.array([s - L + step for _, s in batch], np.int64), L)
            real = to_model_frames(torch.as_tensor(seg.frames, device=model.device))
            actions = torch.as_tensor(seg.actions, device=model.device).long()
            estimate = denoise_real_frame(model, real[:, L], noise[i:i + len(batch)], sigma, real[:, :L], actions)
            frames.append(seg.frames)
            estimates.append(to_uint8_frames(estimate).cpu().numpy())
    return HintedFrames(np.concatenate(frames), np.concatenate(estimates))


def _return_moments(dataset: EpisodeDataset, episode_ids: np.ndarray | list[int], context_length: int, samples: int,
                    seed: int) -> list[tuple[int, int]]:
    """Up to ``samples`` of the real returns of ``episode_ids``, drawn with ``seed``."""
    found = paddle_moments(dataset, episode_ids, context_length)["returns"]  # checks the game
    return [found[i] for i in np.sort(np.random.default_rng(seed).permutation(len(found))[:samples])]


def _ball(game: str, frames: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    return find_objects(game, to_uint8_frames(frames).cpu().numpy()).of("ball")


def _counts(real: tuple[np.ndarray, np.ndarray], predicted: tuple[np.ndarray, np.ndarray],
            tolerance: float) -> np.ndarray:
    score = score_object(real, predicted, tolerance)
    return np.array([score.real, score.shown, score.within], np.int64)
