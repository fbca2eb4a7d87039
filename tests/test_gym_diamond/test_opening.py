"""One way to open a dream for all three faces, and a core that takes any start source."""

import numpy as np
import pytest
import torch
from helpers import PONG_ACTIONS

from gym_diamond import DreamCore, StartBank
from gym_diamond.envs.core import BankStarts, GivenStart
from gym_diamond.envs.opening import open_dream


def test_a_core_dreams_from_a_given_start_without_any_bank(tiny_world_model):
    frames = torch.full((4, 64, 64, 3), 7, dtype=torch.uint8)
    core = DreamCore(tiny_world_model, GivenStart(frames, torch.zeros(4, dtype=torch.long)), num_envs=3)
    obs = core.reset(seed=0)
    assert obs.shape == (3, 64, 64, 3) and bool((obs == 7).all())  # the last given frame, in every row
    assert core.step(torch.zeros(3, dtype=torch.long)).obs.shape == (3, 64, 64, 3)


def test_a_bank_is_a_start_source_checked_against_the_model(tiny_world_model, start_bank):
    core = DreamCore(tiny_world_model, start_bank, num_envs=2)
    assert isinstance(core.start_source, BankStarts)
    wrong = StartBank(np.zeros((2, 3, 64, 64, 3), np.uint8), np.zeros((2, 3), np.int64))  # 3 frames, not 4
    with pytest.raises(ValueError, match="start bank frames are"):
        DreamCore(tiny_world_model, wrong)
    with pytest.raises(TypeError, match="StartSource"):
        DreamCore(tiny_world_model, "bank")


@pytest.mark.parametrize("face", ["env", "vector", "sb3"])
def test_the_three_faces_open_the_same_dream(pong_checkpoint, face):
    import gymnasium as gym

    from gym_diamond.envs import DreamSB3VecEnv

    reference = open_dream(None, pong_checkpoint, num_envs=2, device="cpu", start="bank")
    if face == "env":
        env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu").unwrapped
    elif face == "vector":
        env = gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=pong_checkpoint, device="cpu")
    else:
        env = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, num_envs=2, device="cpu")
    core = env.core
    assert env.get_action_meanings() == reference.action_meanings == PONG_ACTIONS
    assert env.game == reference.game == "Pong"
    assert isinstance(core.start_source, BankStarts)
    assert torch.equal(core.start_source.frames, reference.core.start_source.frames)
    assert core.autoreset == (face != "env")  # a single gymnasium env is reset by its caller
    env.close()


def test_bad_render_options_fail_before_any_file_is_read(tmp_path):
    import gymnasium as gym

    missing = tmp_path / "missing.safetensors"
    with pytest.raises(ValueError, match="render_mode must be one of"):
        gym.make("DiamondDream/Pong-v0", checkpoint=missing, render_mode="ansi")
    with pytest.raises(ValueError, match="render_mode must be one of"):
        gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=missing, render_mode="human")
    with pytest.raises(ValueError, match="start must be one of"):
        open_dream(None, missing, start="nowhere")
