"""EDM maths for next-frame diffusion (Karras et al. 2022, as DIAMOND uses it).

Small functions named after the paper's symbols: the preconditioners, the training noise
distribution, the Karras sigma schedule, and the Euler/Heun sampler with optional churn.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from gym_diamond.config import QUANTIZATIONS, DenoiserConfig, SamplerConfig
from gym_diamond.errors import UserError
from gym_diamond.rng import Generator, randn


@dataclass(frozen=True)
class Conditioners:
    """EDM's c_in, c_skip, c_out, c_noise, each shaped to broadcast against (n, c, h, w) except c_noise (n,)."""

    c_in: Tensor
    c_skip: Tensor
    c_out: Tensor
    c_noise: Tensor


def effective_sigma(sigma: Tensor, sigma_offset_noise: float) -> Tensor:
    """sigma' = sqrt(sigma^2 + sigma_offset^2): offset noise adds variance the preconditioner must see."""
    return (sigma**2 + sigma_offset_noise**2).sqrt()


def conditioners(sigma: Tensor, sigma_data: float, sigma_offset_noise: float) -> Conditioners:
    """EDM's preconditioning (Karras et al. 2022), as DIAMOND's ``models/diffusion/denoiser.py`` computes it, for
    noise levels ``sigma``: (n,)."""
    s = effective_sigma(sigma, sigma_offset_noise)
    c_in = 1 / (s**2 + sigma_data**2).sqrt()
    c_skip = sigma_data**2 / (s**2 + sigma_data**2)
    c_out = s * c_skip.sqrt()
    c_noise = s.log() / 4
    view = (-1, 1, 1, 1)
    return Conditioners(c_in.view(view), c_skip.view(view), c_out.view(view), c_noise)


@dataclass(frozen=True)
class TrainingNoise:
    """The random draws of one denoiser training batch: noise level, offset noise and Gaussian noise.

    Drawn apart from the loss so that data-parallel ranks can draw a whole global batch from one
    shared stream and each keep its rows (``shard``): N ranks then train on exactly the noise that
    one process with the global batch would.
    """

    sigma: Tensor  # (n,)
    offset: Tensor  # (n, c, 1, 1), already scaled by sigma_offset_noise
    noise: Tensor  # (n, c, h, w)

    @classmethod
    def draw(cls, shape: tuple[int, ...], config: DenoiserConfig, generator: torch.Generator | None = None,
             device: torch.device | str = "cpu") -> TrainingNoise:
        """Draws for ``shape`` = (n, c, h, w) frames, in a fixed order from ``generator``."""
        n, c = shape[:2]
        sigma = sample_training_sigma(n, config, generator, device)
        offset = config.sigma_offset_noise * torch.randn(n, c, 1, 1, generator=generator, device=device)
        noise = torch.randn(shape, generator=generator, device=device)
        return cls(sigma, offset, noise)

    def shard(self, rows: slice) -> TrainingNoise:
        return TrainingNoise(self.sigma[rows], self.offset[rows], self.noise[rows])


def sample_training_sigma(n: int, config: DenoiserConfig, generator: torch.Generator | None = None,
                          device: torch.device | str = "cpu") -> Tensor:
    """log sigma ~ Normal(loc, scale), clipped: most training effort where the denoiser is uncertain."""
    log_sigma = torch.randn(n, generator=generator, device=device) * config.train_sigma_scale
    sigma = (log_sigma + config.train_sigma_loc).exp()
    return sigma.clamp(config.train_sigma_min, config.train_sigma_max)


def karras_sigmas(config: SamplerConfig, device: torch.device | str = "cpu") -> Tensor:
    """num_steps sigmas from sigma_max down to sigma_min, spaced in sigma^(1/rho), then a final 0.

    Computed in float32 as DIAMOND computes them, so the schedules agree bit for bit.
    """
    ramp = torch.linspace(0, 1, config.num_steps, dtype=torch.float32)
    max_inv, min_inv = config.sigma_max ** (1 / config.rho), config.sigma_min ** (1 / config.rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** config.rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).to(device=device)


def quantize(frames: Tensor, mode: str = "floor") -> Tensor:
    """Clamp to [-1, 1] and map to the 256 levels a uint8 frame can hold.

    ``"floor"`` truncates as DIAMOND does (``((x + 1) / 2 * 255).byte()``, in the same order of
    operations so the levels agree bit for bit); ``"round"`` rounds to the nearest level.
    """
    if mode == "floor":
        return frames.clamp(-1, 1).add(1).div(2).mul(255).floor().div(255).mul(2).sub(1)
    if mode == "round":
        return frames.clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1)
    raise UserError(f"quantization mode {mode!r}: expected one of {QUANTIZATIONS}")


Denoise = Callable[[Tensor, Tensor], Tensor]
"""denoise(x, sigma) -> the denoised frame D(x; sigma), for x: (n, c, h, w) and sigma: (n,)."""


def sigma_schedule(config: SamplerConfig) -> tuple[float, ...]:
    """``karras_sigmas`` as Python floats (the step sizes are constants of a compiled step, not tensors)."""
    return tuple(karras_sigmas(config).tolist())


def churn_gammas(config: SamplerConfig) -> tuple[float, ...]:
    """Per step, EDM's gamma: > 0 where the stochastic sampler adds noise first."""
    sigmas = sigma_schedule(config)
    gamma_max = min(config.s_churn / config.num_steps, 2**0.5 - 1)
    return tuple(gamma_max if config.s_tmin <= sigmas[i] <= config.s_tmax else 0.0 for i in range(config.num_steps))


def sampler_noise(shape: tuple[int, ...], config: SamplerConfig, generator: Generator | None = None,
                  device: torch.device | str = "cpu") -> list[Tensor]:
    """Every Gaussian a sampler run needs, drawn up front: the start noise, then one per churned step."""
    noises = [randn(shape, generator, device)]
    noises += [randn(shape, generator, device) for gamma in churn_gammas(config) if gamma > 0]
    return noises


def integrate(denoise: Denoise, noises: list[Tensor], config: SamplerConfig) -> Tensor:
    """Integrate the probability-flow ODE from ``noises[0]`` (times 1, as DIAMOND does, or times sigma_max with
    ``config.start == "sigma_max"``, as EDM does); no randomness inside.

    Euler (order 1) or Heun (order 2) steps on the Karras schedule; with s_churn > 0, each step first
    adds noise to climb to sigma_hat = sigma * (1 + gamma) (EDM's stochastic sampler).
    """
    sigmas, gammas = sigma_schedule(config), churn_gammas(config)
    x, churn = noises[0] * (sigmas[0] if config.start == "sigma_max" else 1.0), iter(noises[1:])
    n = x.shape[0]
    for i in range(config.num_steps):
        sigma, next_sigma = sigmas[i], sigmas[i + 1]
        sigma_hat = sigma * (1 + gammas[i])
        if gammas[i] > 0:
            x = x + next(churn) * config.s_noise * (sigma_hat**2 - sigma**2) ** 0.5
        denoised = denoise(x, torch.full((n,), sigma_hat, device=x.device))
        d = (x - denoised) / sigma_hat
        x_next = x + d * (next_sigma - sigma_hat)
        if config.order == 2 and next_sigma > 0:
            denoised_2 = denoise(x_next, torch.full((n,), next_sigma, device=x.device))
            d_2 = (x_next - denoised_2) / next_sigma
            x_next = x + (d + d_2) / 2 * (next_sigma - sigma_hat)
        x = x_next
    return x


def sample(denoise: Denoise, shape: tuple[int, ...], config: SamplerConfig,
           generator: Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Draw frames: ``sampler_noise`` then ``integrate``."""
    return integrate(denoise, sampler_noise(shape, config, generator, device), config)
