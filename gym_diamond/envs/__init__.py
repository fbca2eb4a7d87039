"""The dream as environments: one batched core and its gymnasium and stable-baselines3 faces."""

from gym_diamond.envs.core import DreamCore, DreamStep
from gym_diamond.envs.dream_env import DreamEnv
from gym_diamond.envs.sb3 import DreamSB3VecEnv
from gym_diamond.envs.vector import DreamVectorEnv

__all__ = ["DreamCore", "DreamEnv", "DreamSB3VecEnv", "DreamStep", "DreamVectorEnv"]
