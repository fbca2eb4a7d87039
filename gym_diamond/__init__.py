"""gym-diamond: DIAMOND diffusion world models as Gymnasium environments.

A world model (an EDM diffusion denoiser over 64x64 RGB frames plus a reward/termination model,
Alonso et al., NeurIPS 2024) imagines an Atari game; here it is an environment to train agents in::

    import gymnasium as gym
    import gym_diamond  # registers DiamondDream/<Game>-v0 for every ALE game

    env = gym.make("DiamondDream/Pong-v0", checkpoint="Pong.safetensors")
    envs = gym.make_vec("DiamondDream/Pong-v0", num_envs=256, device="cuda", output="torch")

Where to look:
    DreamEnv, DreamVectorEnv   the gymnasium environments (one batched forward pass per vector step)
    gym_diamond.envs.DreamSB3VecEnv   the same dream as a stable-baselines3 VecEnv
    DreamCore                  the batched dream state behind all of them
    WorldModel, load_checkpoint, save_checkpoint   the model and its safetensors + JSON checkpoints
    Acceleration               speed switches: bf16, channels_last, torch.compile, CUDA graphs
    BatchedGenerator           per-environment random streams: a dream does not depend on its batch
    to_model_frames, to_uint8_frames   uint8 (..., h, w, c) frames to the networks' [-1, 1] (..., c, h, w), and back
    resolve_device             None: CUDA when available; a device this machine lacks is a clear error
    gym_diamond.compare        the dream against the real game from one start: PSNR, side-by-side GIFs
    gym_diamond.play           keyboard and window for playing a dream by hand (the [play] extra)
The ``training`` package builds world models from real Atari play and trains agents in them.
"""

from gym_diamond.acceleration import Acceleration
from gym_diamond.checkpoint import Checkpoint, StartBank, load_checkpoint, save_checkpoint
from gym_diamond.config import (
    DenoiserConfig,
    RewEndConfig,
    SamplerConfig,
    UNetConfig,
    WorldModelConfig,
    light_world_model_config,
    small_world_model_config,
    tiny_world_model_config,
)
from gym_diamond.envs import DreamCore, DreamEnv, DreamVectorEnv
from gym_diamond.envs.core import resolve_device, to_model_frames, to_uint8_frames
from gym_diamond.registration import register_envs
from gym_diamond.rng import BatchedGenerator
from gym_diamond.world_model import ImaginedStep, WorldModel

__version__ = "0.1.0"

register_envs()

__all__ = [
    "Acceleration",
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
    "light_world_model_config",
    "load_checkpoint",
    "register_envs",
    "resolve_device",
    "save_checkpoint",
    "small_world_model_config",
    "tiny_world_model_config",
    "to_model_frames",
    "to_uint8_frames",
]
