"""Damaged files are refused with the file's name: checkpoints, actor-critics, training states."""

import json
import warnings
from pathlib import Path

import pytest
import torch
from helpers import DATA
from safetensors import safe_open

from gym_diamond import integrity, load_checkpoint, save_checkpoint
from gym_diamond.integrity import DIGEST_KEY
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from gym_diamond.registration import find_checkpoint
from training.agents.checkpoints import load_actor_critic, save_actor_critic
from training.runtime.state import load_state, save_state

MEANINGS = ["NOOP", "UP", "DOWN"]
LEGACY = DATA / "legacy_v1" / "Pong.safetensors"  # written before digests existed


@pytest.fixture
def checkpoint(tmp_path, tiny_world_model, start_bank):
    return save_checkpoint(tmp_path / "Pong.safetensors", tiny_world_model, game="Pong", action_meanings=MEANINGS,
                           start_bank=start_bank)


def data_offset(path: Path) -> int:
    """Where the tensor bytes begin: after the 8-byte header length and the JSON header."""
    return 8 + int.from_bytes(path.read_bytes()[:8], "little")


def tensor_span(path: Path, name: str) -> tuple[int, int]:
    header = json.loads(path.read_bytes()[8:data_offset(path)])
    start, end = header[name]["data_offsets"]
    return data_offset(path) + start, data_offset(path) + end


def damage(path: Path, how: str, name: str) -> None:
    data = bytearray(path.read_bytes())
    start, end = tensor_span(path, name)
    if how == "bit flip":
        data[start + (end - start) // 2] ^= 0x04
    elif how == "0xFF block":
        data[start:end] = b"\xff" * (end - start)
    elif how == "zeroed tail (interrupted copy, same size)":
        data[start:] = bytes(len(data) - start)
    path.write_bytes(bytes(data))


HOWS = ["bit flip", "0xFF block", "zeroed tail (interrupted copy, same size)"]


@pytest.mark.parametrize("how", HOWS)
def test_damaged_checkpoint_is_refused(checkpoint, how):
    damage(checkpoint, how, "denoiser.net.conv_in.weight")
    with pytest.raises(ValueError, match=f"{checkpoint.name}: the tensor data does not match the sha256"):
        load_checkpoint(checkpoint)


def test_damaged_start_bank_is_refused(checkpoint):
    damage(checkpoint, "bit flip", "start.frames")  # a flipped bit in a frame: no NaN to catch it
    with pytest.raises(ValueError, match="does not match the sha256"):
        load_checkpoint(checkpoint)


def test_intact_checkpoint_loads_and_carries_its_digest(checkpoint, tiny_world_model):
    with safe_open(str(checkpoint), framework="pt") as f:
        assert len(json.loads(f.metadata()["gym_diamond"])[DIGEST_KEY]) == 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unverified" warning for a file with a digest
        ckpt = load_checkpoint(checkpoint)
    assert torch.equal(ckpt.world_model.denoiser.net.conv_in.weight, tiny_world_model.denoiser.net.conv_in.weight)


def test_non_finite_weights_are_refused(tmp_path, tiny_world_model, start_bank):
    with torch.no_grad():
        tiny_world_model.rew_end.head[0].weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.safetensors", tiny_world_model, game="Pong", action_meanings=MEANINGS,
                           start_bank=start_bank)  # the digest matches: the NaN was there when saved
    with pytest.raises(ValueError, match="nan.safetensors: tensor 'rew_end.head.0.weight' holds NaN or infinite"):
        load_checkpoint(path)


def test_file_without_digest_loads_with_one_warning(monkeypatch):
    monkeypatch.setattr(integrity, "_warned", set())  # as in a fresh process
    with pytest.warns(UserWarning, match="Pong.safetensors was written without a tensor digest") as record:
        load_checkpoint(LEGACY)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_checkpoint(LEGACY)  # said once per file, not at every load


def test_directory_instead_of_a_file(tmp_path, checkpoint):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "world_model.safetensors").write_bytes(checkpoint.read_bytes())
    with pytest.raises(IsADirectoryError, match="is a directory.*pass the file inside it"):
        find_checkpoint("Pong", folder)
    with pytest.raises(IsADirectoryError, match="is a directory, not a checkpoint file"):
        load_checkpoint(folder)


@pytest.mark.parametrize("how", HOWS)
def test_damaged_actor_critic_is_refused(tmp_path, how):
    path = save_actor_critic(tmp_path / "ac.safetensors", ActorCritic(ActorCriticConfig(6, (4, 4, 4, 4), 8)), "Pong")
    load_actor_critic(path)
    damage(path, how, "lstm.weight_ih")
    with pytest.raises(ValueError, match="ac.safetensors: the tensor data does not match the sha256"):
        load_actor_critic(path)
    with pytest.raises(IsADirectoryError, match="is a directory"):
        load_actor_critic(tmp_path)


def test_damaged_training_state_is_refused(tmp_path):
    path = tmp_path / "train_state.safetensors"
    save_state(path, {"model": {"w": torch.arange(1000.0)}, "steps": 3})
    assert load_state(path)["steps"] == 3
    damage(path, "bit flip", "s.model.w")
    with pytest.raises(ValueError, match="train_state.safetensors: the tensor data does not match"):
        load_state(path)
