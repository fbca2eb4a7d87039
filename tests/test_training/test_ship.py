"""Shipping a world model: float16, under the size limit, gates in the provenance, found by gym.make."""

import json

import gymnasium as gym
import pytest
import torch
from helpers import make_tiny_checkpoint
from safetensors import safe_open

import gym_diamond  # noqa: F401
from gym_diamond import load_checkpoint
from gym_diamond.checkpoint import read_metadata
from training.ship import main, ship


def test_ship_writes_float16_with_the_gates_and_gym_make_finds_it(tmp_path, monkeypatch):
    source = make_tiny_checkpoint(tmp_path / "trained.safetensors")
    gates = {"psnr_1_step": 30.1, "reward_recall": 0.9}
    (tmp_path / "gates.json").write_text(json.dumps(gates))
    home = tmp_path / "home"
    main(["--checkpoint", str(source), "--out", str(home / "Pong.safetensors"), "--gates",
          str(tmp_path / "gates.json")])
    shipped = home / "Pong.safetensors"
    with safe_open(str(shipped), framework="pt") as f:
        dtypes = {f.get_slice(name).get_dtype() for name in f.keys() if not name.startswith("start.")}
    assert dtypes == {"F16"}
    provenance = read_metadata(shipped)["provenance"]
    assert provenance["quality_gates"] == gates and provenance["weights"] == "float16"
    assert 0 < provenance["float16_max_weight_change"] < 1e-2
    original, loaded = load_checkpoint(source).world_model, load_checkpoint(shipped).world_model
    for name, weight in original.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], weight.half().float()), name
    monkeypatch.setenv("GYM_DIAMOND_HOME", str(home))
    env = gym.make("DiamondDream/Pong-v0")  # no checkpoint argument: the shipped file
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, _ = env.step(0)
    assert obs.shape == (64, 64, 3)
    env.close()


def test_ship_refuses_a_file_over_the_limit(tmp_path):
    source = make_tiny_checkpoint(tmp_path / "trained.safetensors")
    with pytest.raises(ValueError, match="over the 0.01 MB limit"):
        ship(source, tmp_path / "Pong.safetensors", max_mb=0.01)
    assert not (tmp_path / "Pong.safetensors").exists()


def test_ship_sets_the_sampler_the_gates_chose(tmp_path):
    source = make_tiny_checkpoint(tmp_path / "trained.safetensors")
    assert load_checkpoint(source).config.sampler.num_steps != 1
    main(["--checkpoint", str(source), "--out", str(tmp_path / "Pong.safetensors"), "--denoising-steps", "1"])
    shipped = load_checkpoint(tmp_path / "Pong.safetensors")
    assert shipped.config.sampler.num_steps == 1
    assert shipped.config.sampler.sigma_max == load_checkpoint(source).config.sampler.sigma_max
    env = gym.make("DiamondDream/Pong-v0", checkpoint=tmp_path / "Pong.safetensors")
    assert env.unwrapped.core.model.config.sampler.num_steps == 1
    env.close()
    with pytest.raises(ValueError, match="denoising_steps must be a positive int"):
        ship(source, tmp_path / "Other.safetensors", denoising_steps=0)


def test_ship_sets_where_the_sampler_starts(tmp_path, capsys):
    source = make_tiny_checkpoint(tmp_path / "trained.safetensors")
    assert load_checkpoint(source).config.sampler.start == "unit"  # DIAMOND's, the default
    main(["--checkpoint", str(source), "--out", str(tmp_path / "Pong.safetensors"), "--denoising-steps", "3",
          "--sampler-start", "sigma_max"])
    assert "3 denoising steps from sigma_max noise" in capsys.readouterr().out
    env = gym.make("DiamondDream/Pong-v0", checkpoint=tmp_path / "Pong.safetensors")
    assert env.unwrapped.core.model.config.sampler.start == "sigma_max"
    env.close()
    with pytest.raises(ValueError, match="start.*one of"):
        ship(source, tmp_path / "Other.safetensors", sampler_start="zero")
    assert not (tmp_path / "Other.safetensors").exists()


def test_ship_keeps_fewer_start_contexts_when_asked(tmp_path):
    source = make_tiny_checkpoint(tmp_path / "trained.safetensors")  # 5 contexts
    with pytest.raises(ValueError, match="fewer start contexts .--start-contexts; 5 of 4 frames now"):
        ship(source, tmp_path / "Big.safetensors", max_mb=0.01)
    main(["--checkpoint", str(source), "--out", str(tmp_path / "Pong.safetensors"), "--start-contexts", "2"])
    bank, original = load_checkpoint(tmp_path / "Pong.safetensors").start_bank, load_checkpoint(source).start_bank
    assert len(bank) == 2 and (bank.frames == original.frames[:2]).all()
    assert (bank.actions == original.actions[:2]).all()
    with pytest.raises(ValueError, match="start_contexts must be >= 1"):
        ship(source, tmp_path / "None.safetensors", start_contexts=0)
