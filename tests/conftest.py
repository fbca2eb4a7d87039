import os
import tempfile

import numpy as np
import pytest
import torch
from helpers import make_bandit_checkpoint, make_tiny_checkpoint, real_pong_data

from gym_diamond import StartBank, WorldModel, tiny_world_model_config

# gym.make searches the per-user cache for world models: keep the user's own out of the tests
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="gym-diamond-test-cache-")
# the CPU default precision follows the CPU (bf16 with native bf16 units): the same on every machine in tests,
# whose precision tests mock the capability instead
os.environ["GYM_DIAMOND_CPU_PRECISION"] = "fp32"
# pytest-xdist runs one worker per core: each gets one thread, so two workers do not fight over the cores
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture
def tiny_world_model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(tiny_world_model_config(num_actions=3)).eval()


@pytest.fixture
def start_bank() -> StartBank:
    rng = np.random.default_rng(0)
    return StartBank(rng.integers(0, 256, (5, 4, 64, 64, 3), dtype=np.uint8), rng.integers(0, 3, (5, 4)))



@pytest.fixture(scope="session")
def pong_checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "Pong.safetensors")


@pytest.fixture(scope="session")
def pong_data(tmp_path_factory):
    """Two real episodes of 150 random Pong steps, cut short: data the trainer reads (never writes), made once."""
    return real_pong_data(tmp_path_factory.mktemp("pong_data"))


@pytest.fixture(scope="session")
def bandit_path(tmp_path_factory):
    """``make_bandit_checkpoint``'s dream (its reward model trained for seconds), made once for the tests."""
    path = tmp_path_factory.mktemp("bandit") / "Bandit.safetensors"
    make_bandit_checkpoint(path)
    return path


@pytest.fixture
def one_thread():
    """Small ops: one thread is faster, and two fight over the cores other runs share (20x slower measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
