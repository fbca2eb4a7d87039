"""gym-diamond: DIAMOND diffusion world models as Gymnasium environments.

    import gymnasium as gym
    import gym_diamond  # registers DiamondDream/<Game>-v0

    env = gym.make("DiamondDream/Pong-v0", checkpoint="Pong.safetensors")
"""

from gym_diamond.checkpoint import Checkpoint, StartBank, load_checkpoint, save_checkpoint
from gym_diamond.config import (
    DenoiserConfig,
    RewEndConfig,
    SamplerConfig,
    UNetConfig,
    WorldModelConfig,
    small_world_model_config,
    tiny_world_model_config,
)
from gym_diamond.envs import DreamCore, DreamEnv, DreamVectorEnv
from gym_diamond.registration import register_envs
from gym_diamond.rng import BatchedGenerator
from gym_diamond.world_model import ImaginedStep, WorldModel

__version__ = "0.1.0"

register_envs()

__all__ = [
    "BatchedGenerator",
    "Checkpoint",
    "DreamCore",
    "DreamEnv",
    "DreamVectorEnv",
    "DenoiserConfig",
    "ImaginedStep",
    "RewEndConfig",
    "SamplerConfig",
    "StartBank",
    "UNetConfig",
    "WorldModel",
    "WorldModelConfig",
    "load_checkpoint",
    "register_envs",
    "save_checkpoint",
    "small_world_model_config",
    "tiny_world_model_config",
]
