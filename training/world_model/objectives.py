"""The world model's training losses: the denoiser's with its per-pixel weights, and the reward/termination model's,
each as a forward pass (the form DistributedDataParallel wraps)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.diffusion import TrainingNoise
from gym_diamond.errors import UserError
from training.world_model.training_config import CHANGED_PIXEL_SOURCES, CONTEXT_REACH


def changed_pixel_weights(frames: Tensor, context_length: int, weight: float, source: str = "target") -> Tensor:
    """Per-pixel weights of the denoiser's squared error for ``changed_pixel_weight`` W: (n, K, h, w).

    ``frames`` (n, L + K, c, h, w): the real frames of the samples (padding grey, before any context noise).
    ``source`` "target": a pixel of target i (frame L + i) changed where that frame differs, in any channel, from the
    real frame before it (the last context frame for the first target, the real previous frame for the later ones,
    not the model's estimate that conditions them), dilated by one pixel (a 3x3 max-pool) so that the ball's
    neighbourhood counts. ``source`` "context": where the two real frames before target i differ, dilated by
    ``CONTEXT_REACH`` pixels, so the weights are set before the outcome. ``source`` "both": the union of the two, which
    differs from "context" only where something appears far from any change in the context (a serve, a new score):
    the context foresees where a moving ball goes, not where a new one comes (``WorldModelTrainingConfig.
    changed_pixel_source``).
    The changed pixels weigh 1 + W, the others 1; each frame's weights are then divided by their mean, so a target's
    loss stays a weighted mean of its squared errors on DIAMOND's scale, the weight moving to the pixels that change
    rather than growing. A frame where nothing changed, or everything (the first frame of an episode after grey
    padding), weighs 1 everywhere, as in DIAMOND's loss. Padded targets stay out of the loss through the frame mask.
    """
    if source not in CHANGED_PIXEL_SOURCES:
        raise UserError(f"changed pixel source {source!r}: expected one of {CHANGED_PIXEL_SOURCES}")
    L = context_length
    changed = torch.zeros_like(frames[:, L:, 0])  # (n, K, h, w)
    if source in ("target", "both"):
        changed = torch.maximum(changed, _dilated((frames[:, L:] != frames[:, L - 1:-1]).any(dim=2), 1))
    if source in ("context", "both"):
        if L < 2:
            raise UserError(f"context-changed pixel weights compare the last two context frames: L >= 2, got {L}")
        K = frames.shape[1] - L
        in_context = (frames[:, L - 1:L - 1 + K] != frames[:, L - 2:L - 2 + K]).any(dim=2)
        changed = torch.maximum(changed, _dilated(in_context, CONTEXT_REACH))
    weights = 1 + weight * changed
    return weights / weights.mean(dim=(2, 3), keepdim=True)


def _dilated(changed: Tensor, reach: int) -> Tensor:
    """``changed`` (n, K, h, w) bool, grown by ``reach`` pixels each way (a max-pool), as 0.0/1.0."""
    return F.max_pool2d(changed.float(), kernel_size=2 * reach + 1, stride=1, padding=reach)


class DenoiserObjective(nn.Module):
    """The denoiser's training loss as a forward pass, the form DistributedDataParallel wraps."""

    def __init__(self, denoiser: nn.Module) -> None:
        super().__init__()
        self.denoiser = denoiser

    def forward(self, frames: Tensor, actions: Tensor, frame_mask: Tensor, sigma: Tensor, offset: Tensor,
                noise: Tensor, normalisers: Tensor, pixel_weight: Tensor | None = None) -> Tensor:
        """sigma, offset, noise: the targets' draws stacked on a leading axis (one row per target)."""
        draws = [TrainingNoise(*d) for d in zip(sigma, offset, noise, strict=True)]
        if pixel_weight is None:  # DIAMOND's loss, as it is
            return self.denoiser.autoregressive_loss(frames, actions, frame_mask, draws, normalisers)
        return self.denoiser.autoregressive_loss(frames, actions, frame_mask, draws, normalisers,
                                                 pixel_weight=pixel_weight)


class RewEndObjective(nn.Module):
    """The reward/termination losses as a forward pass, for DistributedDataParallel."""

    def __init__(self, rew_end: nn.Module) -> None:
        super().__init__()
        self.rew_end = rew_end

    def forward(self, *batch: Tensor) -> tuple[Tensor, Tensor]:
        return self.rew_end.loss(*batch)
