"""A device this machine lacks, and an environment used after close(): clear errors, not torch's asserts."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import gym_diamond  # noqa: F401
from gym_diamond.envs import DreamSB3VecEnv
from gym_diamond.envs.core import available_devices, resolve_device


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_says_which_devices_exist(pong_checkpoint):
    with pytest.raises(ValueError, match=r"device='cuda', but .*(no CUDA|not visible).*devices here: \['cpu'\]"):
        gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cuda")
    with pytest.raises(ValueError, match=r"device='cuda:1'.*devices here: \['cpu'\]"):
        gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=pong_checkpoint, device="cuda:1")


def test_cuda_index_beyond_the_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert available_devices() == ["cpu", "cuda:0"]
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(ValueError, match=r"device='cuda:7', but this machine has 1 CUDA device\(s\); devices here: "
                                         r"\['cpu', 'cuda:0'\]"):
        resolve_device("cuda:7")


def test_stepping_after_close_is_an_error(pong_checkpoint):
    envs = gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=pong_checkpoint, device="cpu")
    envs.reset(seed=0)
    envs.step(np.array([0, 1]))
    envs.close()
    with pytest.raises(RuntimeError, match="closed: make a new one"):
        envs.step(np.array([0, 1]))
    with pytest.raises(RuntimeError, match="closed"):
        envs.reset(seed=0)
    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu")
    env.reset(seed=0)
    env.close()
    with pytest.raises(RuntimeError, match="closed"):
        env.step(0)
    venv = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, num_envs=2, device="cpu")
    venv.reset()
    venv.close()
    with pytest.raises(RuntimeError, match="closed"):
        venv.step(np.array([0, 0]))
