"""The dream as environments: one batched core and its gymnasium and stable-baselines3 faces.

``DreamSB3VecEnv`` is imported on first use, so that ``import gym_diamond`` does not load stable-baselines3
(a fifth of a second) for users of other libraries.
"""

from typing import Any

from gym_diamond.envs.core import DreamCore, DreamStep
from gym_diamond.envs.dream_env import DreamEnv
from gym_diamond.envs.vector import DreamVectorEnv

__all__ = ["DreamCore", "DreamEnv", "DreamSB3VecEnv", "DreamStep", "DreamVectorEnv"]


def __getattr__(name: str) -> Any:
    if name == "DreamSB3VecEnv":
        from gym_diamond.envs.sb3 import DreamSB3VecEnv

        return DreamSB3VecEnv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
