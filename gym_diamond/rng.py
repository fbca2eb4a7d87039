"""Counter-based random numbers: one independent stream per environment, drawn in one batched op.

A ``torch.Generator`` is one stream for a whole batch, so an environment's dream would depend on
its neighbours and on the batch size, and keeping one generator per environment means a Python loop
over environments. Here every draw is a hash of (environment seed, draw counter, element index),
computed with integer tensor ops on any device: environment i's numbers are the same whether it
steps alone or among 1,023 others, and identical on CPU and GPU.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from gym_diamond.errors import UserError

_MASK32 = 0xFFFFFFFF


def _mul32(x: Tensor, c: int) -> Tensor:
    """(x * c) mod 2**32 for x < 2**32, split in 16-bit halves so int64 never overflows."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _MASK32


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer mixer (lowbias32); int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class BatchedGenerator:
    """Per-row random streams for a batch: row i draws from ``seeds[i]`` alone.

    ``seeds``: (n,) integer tensor; each draw advances every row's counter by one, so rows reseeded
    at different times (environments reset at different steps) stay independent and reproducible.
    """

    def __init__(self, seeds: Tensor | list[int], device: torch.device | str | None = None) -> None:
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=device)
        if seeds.ndim != 1:
            raise UserError(f"seeds must be a 1-D tensor of per-row seeds, got shape {tuple(seeds.shape)}")
        self.device = seeds.device
        self.keys = torch.zeros_like(seeds)
        self.counters = torch.zeros_like(seeds)
        self.reseed(torch.ones_like(seeds, dtype=torch.bool), seeds)

    def __len__(self) -> int:
        return self.keys.shape[0]

    def reseed(self, mask: Tensor, seeds: Tensor) -> None:
        """Restart the streams of the rows where ``mask`` is true from ``seeds`` (same shape as mask)."""
        seeds = torch.as_tensor(seeds, dtype=torch.int64, device=self.device)
        key = hash32(hash32(seeds & _MASK32) ^ ((seeds >> 32) & _MASK32))
        self.keys = torch.where(mask, key, self.keys)
        self.counters = torch.where(mask, torch.zeros_like(self.counters), self.counters)

    def _bits(self, shape: tuple[int, ...]) -> Tensor:
        """(n, *shape) uniform 32-bit integers; advances every row's counter."""
        numel = math.prod(shape)
        index = torch.arange(numel, device=self.device, dtype=torch.int64)
        row = hash32(self.keys ^ hash32(self.counters + 0x9E3779B9))
        self.counters = self.counters + 1
        bits = hash32(row[:, None] ^ hash32(index)[None, :] )
        return bits.reshape(len(self), *shape)

    def uniform(self, *shape: int) -> Tensor:
        """(n, *shape) float32 in (0, 1)."""
        return ((self._bits(shape) >> 8).float() + 0.5) / 16777216.0

    def normal(self, *shape: int) -> Tensor:
        """(n, *shape) standard Gaussians (Box-Muller)."""
        u = self.uniform(2, *shape)
        return torch.sqrt(-2.0 * torch.log(u[:, 0])) * torch.cos(2.0 * math.pi * u[:, 1])

    def state_dict(self) -> dict[str, Tensor]:
        """The streams' keys and counters, to save and resume them."""
        return {"keys": self.keys.clone(), "counters": self.counters.clone()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Continue the streams saved by ``state_dict``."""
        self.keys = state["keys"].to(self.device)
        self.counters = state["counters"].to(self.device)


Generator = torch.Generator | BatchedGenerator


def randn(shape: tuple[int, ...], generator: Generator | None = None, device: torch.device | str = "cpu",
          dtype: torch.dtype = torch.float32) -> Tensor:
    """Gaussians from either kind of generator; a BatchedGenerator must have one row per ``shape[0]``."""
    if isinstance(generator, BatchedGenerator):
        if len(generator) != shape[0]:
            raise UserError(f"BatchedGenerator has {len(generator)} rows but the batch is {shape[0]}")
        return generator.normal(*shape[1:]).to(dtype)
    return torch.randn(shape, generator=generator, device=device, dtype=dtype)


def rand(shape: tuple[int, ...], generator: Generator | None = None, device: torch.device | str = "cpu") -> Tensor:
    """Uniforms in (0, 1) from either kind of generator."""
    if isinstance(generator, BatchedGenerator):
        if len(generator) != shape[0]:
            raise UserError(f"BatchedGenerator has {len(generator)} rows but the batch is {shape[0]}")
        return generator.uniform(*shape[1:])
    return torch.rand(shape, generator=generator, device=device)
