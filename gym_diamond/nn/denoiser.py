"""The EDM denoiser D for the next frame, conditioned on the last L frames and actions."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.config import DenoiserConfig
from gym_diamond.diffusion import TrainingNoise, conditioners, quantize
from gym_diamond.errors import UserError
from gym_diamond.nn.unet import UNet


@dataclass(frozen=True)
class DenoiserLoss:
    loss: Tensor
    sigma: Tensor


class Denoiser(nn.Module):
    """D(x; sigma) = c_skip * x + c_out * F(c_in * x, c_noise, context / sigma_data, actions)."""

    def __init__(self, config: DenoiserConfig, num_actions: int) -> None:
        super().__init__()
        self.config = config
        c, L = config.image_channels, config.context_length
        self.net = UNet(config.unet, (L + 1) * c, c, num_actions, L)

    def _check(self, context: Tensor, actions: Tensor) -> None:
        cfg = self.config
        expected = (cfg.context_length, cfg.image_channels, cfg.image_size, cfg.image_size)
        if context.ndim != 5 or tuple(context.shape[1:]) != expected:
            raise UserError(f"context frames must be (n, {', '.join(map(str, expected))}), got {tuple(context.shape)}")
        if actions.shape != context.shape[:2]:
            raise UserError(f"actions must be (n, {cfg.context_length}), got {tuple(actions.shape)}")

    def forward(self, noisy: Tensor, sigma: Tensor, context: Tensor, actions: Tensor) -> Tensor:
        """The network's raw output F for noisy next frames: (n, c, h, w) at levels sigma: (n,)."""
        cs = conditioners(sigma, self.config.sigma_data, self.config.sigma_offset_noise)
        return self.net(noisy * cs.c_in, cs.c_noise, context.flatten(1, 2) / self.config.sigma_data, actions)

    def denoise(self, noisy: Tensor, sigma: Tensor, context: Tensor, actions: Tensor,
                autocast: Callable[[torch.device], AbstractContextManager[None]] | None = None,
                quantization: str = "floor") -> Tensor:
        """The estimate of the clean next frame, clamped and quantised to 256 levels (sampling time).

        ``autocast(device)`` wraps the network alone: the preconditioning around it stays fp32.
        ``quantization`` is the sampler's (``SamplerConfig.quantization``).
        """
        cs = conditioners(sigma, self.config.sigma_data, self.config.sigma_offset_noise)
        with autocast(noisy.device) if autocast is not None else contextlib.nullcontext():
            out = self.net(noisy * cs.c_in, cs.c_noise, context.flatten(1, 2) / self.config.sigma_data, actions)
        return quantize(cs.c_skip * noisy + cs.c_out * out.float(), quantization)

    def loss(self, next_frame: Tensor, context: Tensor, actions: Tensor,
             generator: torch.Generator | None = None, mask: Tensor | None = None,
             draws: TrainingNoise | None = None) -> DenoiserLoss:
        """EDM training loss on clean next frames (n, c, h, w) in [-1, 1] given their context.

        Offset noise (a per-image, per-channel constant) teaches the model to change a frame's mean
        colour, which plain Gaussian noise at small sigma cannot; ``mask`` (n,) drops padded samples.
        The noise comes from ``draws`` when given (data-parallel shards), else from ``generator``.
        """
        self._check(context, actions)
        if draws is None:
            draws = TrainingNoise.draw(tuple(next_frame.shape), self.config, generator, next_frame.device)
        sigma = draws.sigma
        noisy = next_frame + draws.offset + draws.noise * sigma.view(-1, 1, 1, 1)
        cs = conditioners(sigma, self.config.sigma_data, self.config.sigma_offset_noise)
        target = (next_frame - cs.c_skip * noisy) / cs.c_out
        out = self.net(noisy * cs.c_in, cs.c_noise, context.flatten(1, 2) / self.config.sigma_data, actions)
        per_sample = F.mse_loss(out.float(), target, reduction="none").mean(dim=(1, 2, 3))
        if mask is not None:
            per_sample = per_sample[mask]
        return DenoiserLoss(per_sample.mean(), sigma)

    def autoregressive_loss(self, frames: Tensor, actions: Tensor, frame_mask: Tensor,
                            draws: Sequence[TrainingNoise], normalisers: Tensor | None = None,
                            pixel_weight: Tensor | None = None) -> Tensor:
        """DIAMOND's denoiser objective: the mean EDM loss over consecutive targets, each after the first
        conditioned on the model's own estimate of the one before (DIAMOND's remedy for drift).

        frames: (n, L + K, c, h, w) in [-1, 1], padding already grey; actions: (n, L + K - 1), actions[:, t]
        taken at frames[:, t]; frame_mask: (n, L + K) bool, False on padding; ``draws``: the K targets'
        noise. Target i is frames[:, L + i] given frames[:, i : L + i], where for i >= 1 the newest context
        frame is the denoised estimate of target i - 1 at its training noise level, clamped and quantised
        as a sampled frame is, and without gradient (DIAMOND's ``Denoiser.forward``, whose
        ``wrap_model_output`` runs under ``no_grad``). Padded targets carry no loss; a target's loss is
        the mean over its real samples, or over ``normalisers[i]`` of them when given (data-parallel
        ranks pass the global count over the number of ranks, so that DDP's average is the global mean).
        ``pixel_weight`` (n, K, h, w), off (None) in DIAMOND's objective: each target's squared error is
        weighted per pixel before its mean over the frame (``training.world_model.objectives.changed_pixel_weights``).
        """
        L, K = self.config.context_length, frames.shape[1] - self.config.context_length
        if K < 1 or len(draws) != K:
            raise UserError(f"expected L + K frames with K = len(draws) >= 1 targets (L = {L}), got "
                            f"{frames.shape[1]} frames and {len(draws)} draws")
        if actions.shape[:2] != (frames.shape[0], L + K - 1) or frame_mask.shape != frames.shape[:2]:
            raise UserError(f"actions must be (n, {L + K - 1}) and frame_mask (n, {L + K}), got "
                            f"{tuple(actions.shape)} and {tuple(frame_mask.shape)}")
        if pixel_weight is not None and pixel_weight.shape != (frames.shape[0], K, *frames.shape[-2:]):
            raise UserError(f"pixel_weight must be (n, K, h, w) = {(frames.shape[0], K, *frames.shape[-2:])}, got "
                            f"{tuple(pixel_weight.shape)}")
        context, total = frames[:, :L], frames.new_zeros(())
        for i, draw in enumerate(draws):
            target, mask = frames[:, L + i], frame_mask[:, L + i]
            noisy = target + draw.offset + draw.noise * draw.sigma.view(-1, 1, 1, 1)
            cs = conditioners(draw.sigma, self.config.sigma_data, self.config.sigma_offset_noise)
            out = self.net(noisy * cs.c_in, cs.c_noise, context.flatten(1, 2) / self.config.sigma_data,
                           actions[:, i:L + i]).float()
            squared = (out - (target - cs.c_skip * noisy) / cs.c_out) ** 2
            if pixel_weight is not None:
                squared = squared * pixel_weight[:, i, None]
            count = mask.sum() if normalisers is None else normalisers[i]
            total = total + (squared.mean(dim=(1, 2, 3)) * mask).sum() / count.clamp(min=1)
            if i + 1 < K:
                with torch.no_grad():
                    estimate = quantize(cs.c_skip * noisy + cs.c_out * out, "floor")
                context = torch.cat([context[:, 1:], estimate[:, None]], dim=1)
        return total / K
