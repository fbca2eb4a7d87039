"""One-step dreams at chosen moments of real episodes: the model's next frame from a real context and actions.

The serve and brick measures (``training.fidelity.serve``, ``training.fidelity.bricks``) judge the dream where the
game does something rare (serves the ball, breaks a brick) and where it does not, from the same real contexts the
game went on from; this draws those next frames.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from gym_diamond import BatchedGenerator, WorldModel, to_model_frames, to_uint8_frames
from training.data.dataset import EpisodeDataset

__all__ = ["one_step_dreams"]


@torch.no_grad()
def one_step_dreams(model: WorldModel, dataset: EpisodeDataset, positions: list[tuple[int, int]], seed: int,
                    batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The real next frames and the model's, uint8 (k, 64, 64, 3) each, a batch at a time in the order of
    ``positions``: each dreamt from the real context ending at frame s of episode e (``positions``: (e, s), s >=
    context length - 1) and its actions, with the model's own sampler and precision; sample i's random stream comes
    from ``seed`` and i alone."""
    L, device = model.config.denoiser.context_length, model.device
    for i in range(0, len(positions), batch_size):
        batch = positions[i:i + batch_size]
        ids = np.array([e for e, _ in batch], np.int64)
        starts = np.array([s - L + 1 for _, s in batch], np.int64)
        seg = dataset.get_segments(ids, starts, L)  # frames s-L+1..s+1, the actions taken at s-L+1..s
        frames = to_model_frames(torch.as_tensor(seg.frames[:, :L], device=device))
        actions = torch.as_tensor(seg.actions, device=device).long()
        generator = BatchedGenerator(torch.arange(i, i + len(batch)) + seed * 1_000_003, device=device)
        step = model.imagine_step(frames, actions, generator=generator)
        yield seg.frames[:, L], to_uint8_frames(step.next_frame).cpu().numpy()
