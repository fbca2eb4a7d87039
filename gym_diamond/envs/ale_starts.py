"""Dreams that start from the real game: reset ALE with the Atari 100k protocol, hand 4 frames over."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

NOOP = 0  # action 0 is NOOP in every game's minimal action set


class AleStarts:
    """One real ALE game per dream environment, reset only when its dream restarts.

    A restart resets the game (1..30 random no-op frames, seeded from the environment's own random
    stream), plays ``context_length`` no-op steps and returns those frames as the dream's context.
    This runs on the host, one game at a time: it is the price of real starts, paid only at resets.
    """

    def __init__(self, game: str, num_envs: int, context_length: int, device: torch.device) -> None:
        from gym_diamond.atari import make_atari_env  # imports ale-py only when real starts are asked for

        self.envs = [make_atari_env(game) for _ in range(num_envs)]
        self.context_length = context_length
        self.device = device

    def starts(self, mask: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """Reset the masked rows' real games and return their last L frames (no-op actions)."""
        n, L = len(self.envs), self.context_length
        frames = np.zeros((n, L, *self.envs[0].observation_space.shape), dtype=np.uint8)
        seeds = (uniform.double() * 2**31).long().cpu().numpy()
        for i in np.flatnonzero(mask.cpu().numpy()):
            env = self.envs[i]
            env.reset(seed=int(seeds[i]))
            for t in range(L):
                frames[i, t] = env.step(NOOP)[0]
        actions = torch.full((n, L), NOOP, dtype=torch.long, device=self.device)
        return torch.as_tensor(frames, device=self.device), actions

    def close(self) -> None:
        """Close the real games."""
        for env in self.envs:
            env.close()
