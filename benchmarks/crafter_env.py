"""Crafter (Hafner, 2021) as a Gymnasium environment, for the world-model benchmark on a richer world than Atari.

Crafter's own ``crafter.Env`` keeps the pre-Gymnasium API (``reset() -> obs``, ``step -> obs, reward, done,
info``) and its own space classes. This adapter gives it Gymnasium's: 64x64 RGB uint8 observations, 17
discrete actions named as Crafter names them, ``terminated`` when the player dies (Crafter's ``discount`` 0)
and ``truncated`` at its 10,000-step limit. Importing the module registers ``Crafter-v1``, so the collection
command can name it as ``benchmarks.crafter_env:Crafter-v1`` (run from the repository root)::

    pip install crafter
    python -m training.data.collect --env-id benchmarks.crafter_env:Crafter-v1 --out runs/crafter/data --steps 20000
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "Crafter-v1"


class CrafterEnv(gym.Env[np.ndarray, np.int64]):
    """One Crafter world; ``reset(seed=s)`` generates world ``s``."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(self, size: int = 64, length: int = 10_000, render_mode: str | None = None) -> None:
        import crafter

        self._crafter = crafter
        self._size, self._length = size, length
        self._env = crafter.Env(area=(64, 64), view=(9, 9), size=(size, size), length=length)
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Discrete(len(crafter.constants.actions))
        self.render_mode = render_mode
        self._obs: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is not None:  # Crafter seeds its world generator at construction
            self._env = self._crafter.Env(area=(64, 64), view=(9, 9), size=(self._size, self._size),
                                          length=self._length, seed=seed)
        self._obs = self._env.reset()
        return self._obs, {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, done, info = self._env.step(int(action))
        self._obs = obs
        terminated = bool(done and info.get("discount", 1.0) == 0.0)
        return obs, float(reward), terminated, bool(done and not terminated), {"achievements": info["achievements"]}

    def render(self) -> np.ndarray | None:
        return self._obs

    def get_action_meanings(self) -> list[str]:
        """Crafter's action names, index = action."""
        return list(self._crafter.constants.actions)


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=CrafterEnv)
