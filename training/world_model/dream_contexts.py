"""Contexts the denoiser dreamt itself, for a share of its training samples: a remedy for drift in closed loop.

A dream conditions every frame on frames it drew, while DIAMOND trains the denoiser on real contexts only (its
second autoregressive target sees one denoised estimate, at the training noise level). Errors too small to see in
one frame then pile up over tens of steps: fed the episode's actions from real contexts, a Pong dream keeps the
opponent's paddle within 4 rows of the real one's in 87% of samples at step 8 and in 25% at step 64
(``benchmarks/real_action_drift.py``, ``benchmarks/README.md``).

``DreamContexts`` keeps a pool of rollouts. Each starts from a real context of a training episode and advances one
frame per update, drawn by the denoiser being trained with its own sampler from its last L frames and the actions
the episode took; the pool's contexts (real frames giving way to dreamt ones) condition a share of each denoiser
batch, whose targets stay the frames the real episode showed next. The denoiser so learns to bring a context its own
frames spoiled back to the game. A rollout starts again from a new real context when it reaches its drawn length
(uniform in 1..``max_age`` frames, so that the pool holds every age), when its episode has no frame left for the
next sample, or when its newest frame parts from the real one in more than ``tolerance`` pixels: past that the
episode's next frame is no longer what the dream's context leads to (the ball is elsewhere), and would teach the
denoiser to jump to it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from gym_diamond.config import SamplerConfig
from gym_diamond.diffusion import sample
from gym_diamond.errors import UserError
from gym_diamond.nn.denoiser import Denoiser
from training.runtime.modes import evaluating

# a pixel parts from the real frame where one of its channels differs by more than this (frames in [-1, 1]: 32 or
# more of 255 levels), far above the few levels of a sampler's noise
PARTED_LEVEL = 0.25


def parted_pixels(dreamt: Tensor, real: Tensor) -> Tensor:
    """(n,) pixels of frames (n, c, h, w) in [-1, 1] where a channel of ``dreamt`` is more than PARTED_LEVEL off."""
    return ((dreamt - real).abs().amax(dim=1) > PARTED_LEVEL).sum(dim=(1, 2))


@dataclass(frozen=True)
class DreamRows:
    """Where the pool's samples are cut from their episodes, and the contexts that replace their first L frames."""

    episodes: np.ndarray  # (P,) episode ids
    starts: np.ndarray  # (P,) index of each sample's first frame: its real context would start there
    contexts: Tensor  # (P, L, c, h, w) in [-1, 1]: the rollouts' last L frames, real then dreamt


class DreamContexts:
    """A pool of ``size`` rollouts the denoiser dreams one frame per update (module docstring).

    ``lengths`` are the training episodes' action counts, by episode id (``EpisodeDataset.lengths``); rollouts start
    in ``episode_ids``, drawn in proportion to their lengths. ``targets`` is the number of real frames each sample
    needs after its context (1 + autoregressive steps); ``stream`` tells data-parallel ranks' pools apart.
    """

    def __init__(self, size: int, context_length: int, targets: int, lengths: np.ndarray, episode_ids: np.ndarray,
                 max_age: int, tolerance: int, seed: int, device: torch.device, stream: int = 0) -> None:
        self.size, self.context_length, self.targets = size, context_length, targets
        self.max_age, self.tolerance = max_age, tolerance
        self.lengths = np.asarray(lengths, np.int64)
        usable = np.asarray(episode_ids, np.int64)
        self.episode_ids = usable[self.lengths[usable] >= context_length + targets - 1]
        # streams of their own (one per data-parallel rank): the rest of the batch draws as it would without the pool
        self.rng = np.random.default_rng([seed, stream, 0xD2EA])
        self.noise = torch.Generator(device=device).manual_seed(int(self.rng.integers(2**62)))
        self.device = device
        self.episodes = np.zeros(size, np.int64)
        self.origins = np.zeros(size, np.int64)  # first frame of each rollout's real context
        self.ages = np.zeros(size, np.int64)  # dreamt frames so far
        self.lifetimes = np.zeros(size, np.int64)  # dreamt frames before it starts again
        self.contexts: Tensor | None = None  # (P, L, c, h, w); None until the first rows are asked for
        self.restarts = {"length": 0, "episode_end": 0, "parted": 0}  # why rollouts started again, since the start
        self._fresh = np.ones(size, bool)  # rollouts whose context must be loaded from their episode

    def rows(self, load_context: Callable[[np.ndarray, np.ndarray], Tensor]) -> DreamRows:
        """This update's samples: ``load_context(episodes, starts)`` gives real contexts (n, L, c, h, w) in [-1, 1]
        for rollouts that start now."""
        if self.episode_ids.size == 0:
            raise UserError(f"no training episode has the {self.context_length + self.targets - 1} actions a dreamt "
                            f"context and its targets need: collect longer episodes")
        fresh = np.flatnonzero(self._fresh)
        if fresh.size:
            self._start(fresh)
            real = load_context(self.episodes[fresh], self.origins[fresh])
            if self.contexts is None:
                self.contexts = real.new_zeros((self.size, *real.shape[1:]))
            self.contexts[torch.as_tensor(fresh, device=real.device)] = real
            self._fresh[fresh] = False
        assert self.contexts is not None
        return DreamRows(self.episodes.copy(), self.origins + self.ages, self.contexts)

    @torch.no_grad()
    def advance(self, denoiser: Denoiser, actions: Tensor, real_next: Tensor, sampler: SamplerConfig,
                autocast: Any) -> None:
        """Dream each rollout's next frame from its context and ``actions`` (P, L), the episode's, and compare it with
        ``real_next`` (P, c, h, w), the frame the episode showed; mark the rollouts that start again."""
        assert self.contexts is not None, "rows() first"
        contexts = self.contexts

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            return denoiser.denoise(x, sigma, contexts, actions, autocast=autocast, quantization=sampler.quantization)

        with evaluating(denoiser):
            frame = sample(denoise, tuple(real_next.shape), sampler, self.noise, self.device)
        self.contexts = torch.cat([contexts[:, 1:], frame[:, None].to(contexts.dtype)], dim=1)
        self.ages += 1
        parted = parted_pixels(frame, real_next).cpu().numpy() > self.tolerance
        ended = self.origins + self.ages + self.context_length + self.targets - 1 > self.lengths[self.episodes]
        aged = self.ages >= self.lifetimes
        for reason, hit in (("parted", parted), ("episode_end", ended & ~parted), ("length", aged & ~parted & ~ended)):
            self.restarts[reason] += int(hit.sum())
        self._fresh |= parted | ended | aged

    def mean_age(self) -> float:
        """The pool's mean count of dreamt frames in the contexts of the last rows."""
        return float(self.ages.mean())

    def _start(self, rollouts: np.ndarray) -> None:
        """New rollouts: an episode in proportion to its length, a context with room for a sample after it."""
        lengths = self.lengths[self.episode_ids]
        chosen = self.rng.choice(self.episode_ids, size=rollouts.size, p=lengths / lengths.sum())
        room = self.lengths[chosen] - (self.context_length + self.targets - 1)
        self.episodes[rollouts] = chosen
        self.origins[rollouts] = self.rng.integers(0, room + 1)
        self.ages[rollouts] = 0
        self.lifetimes[rollouts] = self.rng.integers(1, self.max_age + 1, rollouts.size)

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs to go on with the same rollouts."""
        return {"episodes": self.episodes.tolist(), "origins": self.origins.tolist(), "ages": self.ages.tolist(),
                "lifetimes": self.lifetimes.tolist(), "fresh": self._fresh.tolist(), "restarts": dict(self.restarts),
                "contexts": self.contexts, "rng": self.rng.bit_generator.state, "noise": self.noise.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from ``state_dict``'s output."""
        if len(state["episodes"]) != self.size:
            raise UserError(f"the saved pool holds {len(state['episodes'])} rollouts, this one {self.size}")
        self.episodes, self.origins = np.array(state["episodes"], np.int64), np.array(state["origins"], np.int64)
        self.ages, self.lifetimes = np.array(state["ages"], np.int64), np.array(state["lifetimes"], np.int64)
        self._fresh, self.restarts = np.array(state["fresh"], bool), dict(state["restarts"])
        contexts = state["contexts"]
        self.contexts = None if contexts is None else contexts.to(self.device)
        self.rng.bit_generator.state = state["rng"]
        self.noise.set_state(state["noise"])
