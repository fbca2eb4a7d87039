"""The world models shipped in the package: found with no argument, they load, step, and say where they came from."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
from helpers import make_tiny_checkpoint

import gym_diamond  # noqa: F401
from gym_diamond import registration
from gym_diamond.checkpoint import read_metadata
from gym_diamond.registration import PRETRAINED_DIR, find_checkpoint

SHIPPED = ["Pong"]  # Breakout misses the termination gate (benchmarks/README.md)


@pytest.fixture(autouse=True)
def no_user_models(tmp_path, monkeypatch):
    """Only the package's own files: no $GYM_DIAMOND_HOME, an empty per-user cache."""
    monkeypatch.delenv("GYM_DIAMOND_HOME", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))


@pytest.mark.parametrize("game", SHIPPED)
def test_shipped_world_model_is_found_and_small(game):
    path = find_checkpoint(game)
    assert path == PRETRAINED_DIR / f"{game}.safetensors"
    assert path.stat().st_size <= 25 * 2**20


@pytest.mark.parametrize("game", SHIPPED)
def test_shipped_world_model_carries_its_provenance_and_says_what_it_fails(game):
    metadata = read_metadata(PRETRAINED_DIR / f"{game}.safetensors")
    provenance = metadata["provenance"]
    assert metadata["game"] == game and provenance["weights"] == "float16"
    assert provenance["denoiser_steps"] >= 1000 and provenance["dataset_steps"] >= 100_000
    assert provenance["data_collection"][0]["policy"] == "BallFollower"
    gates = provenance["quality_gates"]
    assert gates["game"] == game and gates["events"]["transitions"] > 0
    chosen = gates["fidelity"][f"{metadata['config']['sampler']['num_steps']}_denoising_steps"]
    assert set(chosen["objects"]) == {"1", "5", "15"} and "closed_loop" in gates and "dream_events" in gates
    assert gates["transfer"]["ppo_steps"] > 0 and len(gates["transfer"]["ppo_returns"]) == gates["transfer"]["episodes"]
    # a file that claims nothing it has not passed: every gate that failed is listed, and the ball's first
    if not gates["passed"]:
        assert gates["failed"] and any("objects_gate" in why for why in gates["failed"])
        assert not chosen["objects_gate"]["passed"]


@pytest.mark.parametrize("game", SHIPPED)
def test_a_shipped_dream_that_failed_its_gates_warns_when_opened(game):
    passed = read_metadata(PRETRAINED_DIR / f"{game}.safetensors")["provenance"]["quality_gates"]["passed"]
    registration._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gym.make(f"DiamondDream/{game}-v0", device="cpu").close()
    said = [str(w.message) for w in caught if "failed its quality gates" in str(w.message)]
    assert len(said) == (0 if passed else 1)


def test_failed_gates_warn_once_per_file_and_passed_ones_never(tmp_path):
    failed = make_tiny_checkpoint(tmp_path / "failed.safetensors",
                                  provenance={"quality_gates": {"passed": False, "failed": ["a: b", "c: d"]}})
    passed = make_tiny_checkpoint(tmp_path / "passed.safetensors", provenance={"quality_gates": {"passed": True}})
    registration._WARNED.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for path in (failed, failed, passed):
            gym.make("DiamondDream/Pong-v0", checkpoint=path, device="cpu").close()
    said = [str(w.message) for w in caught if "quality gates" in str(w.message)]
    assert said == ["failed.safetensors failed its quality gates: a: b (and 1 more). The list: gym_diamond.checkpoint"
                    ".read_metadata(path)['provenance']['quality_gates']['failed']"]


@pytest.mark.parametrize("game", SHIPPED)
def test_shipped_dream_steps_with_no_argument(game):
    env = gym.make(f"DiamondDream/{game}-v0", device="cpu")
    obs, _ = env.reset(seed=0)
    first = obs.copy()
    for action in [1, 2, 3, 0, 1]:
        obs, reward, terminated, truncated, _ = env.step(action % env.action_space.n)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and reward in (-1.0, 0.0, 1.0)
        if terminated or truncated:
            break
    assert not np.array_equal(first, np.zeros_like(first))  # a real start context, not a blank screen
    env.close()
    envs = gym.make_vec(f"DiamondDream/{game}-v0", num_envs=3, device="cpu")
    obs, _ = envs.reset(seed=0)
    obs, rewards, *_ = envs.step(np.zeros(3, dtype=np.int64))
    assert obs.shape == (3, 64, 64, 3) and rewards.shape == (3,)
    envs.close()
