"""The real game (Atari, or any Gymnasium environment) behind the dream's interface, so that DIAMOND's env loop
and loss train on real steps.

An agent trained in a dream is worth what it buys over the same algorithm trained on the real steps the dream
was learnt from. :class:`RealGameEnv` gives ``training.agents.imagination.EnvLoop`` real games with
``WorldModelEnv``'s contract: float frames (n, c, h, w) in [-1, 1], rewards as their sign (the three
classes the dream's reward model predicts, and the usual clipping of Atari agents), episodes ending as in the
data the dreams learnt from (an Atari episode at each life loss: the collection's own env), and
``info["final_observation"]`` for the ended rows.
Real episodes start from the game itself, so there is no context to burn in (no ``burnin_obs``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from gym_diamond import to_model_frames
from training.data.environments import RealEnvironment

__all__ = ["RealGameEnv"]


class RealGameEnv:
    """``num_envs`` real games of ``environment`` (an Atari game's name, or any ``RealEnvironment``) stepped
    together; ``steps`` counts the agent steps taken in all."""

    def __init__(self, environment: RealEnvironment | str, num_envs: int, *, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        if isinstance(environment, str):
            environment = RealEnvironment(game=environment)
        self.env = environment.collector_env(num_envs, seed=seed)  # the collection's: data and control alike
        self.num_envs, self.seed, self.device = num_envs, seed, torch.device(device)
        self.steps = 0

    def _frames(self, obs: np.ndarray) -> Tensor:
        return to_model_frames(torch.as_tensor(obs, device=self.device))

    def reset(self) -> tuple[Tensor, dict[str, Any]]:
        obs, _ = self.env.reset(seed=self.seed)
        return self._frames(obs), {}

    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        obs, reward, terminated, truncated, infos = self.env.step(actions.cpu().numpy())
        self.steps += self.num_envs
        ended = terminated | truncated
        info: dict[str, Tensor] = {}
        if ended.any():
            # an Atari vector env gives an array, gymnasium's SyncVectorEnv one object per env (None where none ended)
            info = {"final_observation": self._frames(np.stack(list(infos["final_obs"][ended])))}
        as_tensor = lambda x, dtype: torch.as_tensor(x, dtype=dtype, device=self.device)  # noqa: E731
        return (self._frames(obs), as_tensor(np.sign(reward), torch.float32), as_tensor(terminated, torch.bool),
                as_tensor(truncated, torch.bool), info)

    def close(self) -> None:
        self.env.close()
