import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gym_diamond import WorldModel, load_checkpoint, save_checkpoint, tiny_world_model_config
from gym_diamond.checkpoint import METADATA_KEY, read_metadata

MEANINGS = ["NOOP", "UP", "DOWN"]


@pytest.fixture
def saved(tmp_path, tiny_world_model, start_bank):
    path = tmp_path / "Pong.safetensors"
    save_checkpoint(path, tiny_world_model, game="Pong", action_meanings=MEANINGS, start_bank=start_bank,
                    provenance={"steps": 12})
    return path


def test_round_trip_is_bit_exact(saved, tiny_world_model, start_bank):
    ckpt = load_checkpoint(saved)
    for name, tensor in tiny_world_model.state_dict().items():
        assert torch.equal(ckpt.world_model.state_dict()[name], tensor), name
    assert ckpt.config == tiny_world_model.config
    assert ckpt.game == "Pong" and ckpt.action_meanings == MEANINGS
    assert np.array_equal(ckpt.start_bank.frames, start_bank.frames)
    assert np.array_equal(ckpt.start_bank.actions, start_bank.actions)
    assert ckpt.provenance["steps"] == 12 and "torch" in ckpt.provenance["library_versions"]
    assert not list(saved.parent.glob("*.tmp"))


def test_half_precision_weights_load_as_float32(tmp_path, tiny_world_model, start_bank):
    path = save_checkpoint(tmp_path / "h.safetensors", tiny_world_model, game="Pong", action_meanings=MEANINGS,
                           start_bank=start_bank, half=True)
    ckpt = load_checkpoint(path)
    for name, tensor in ckpt.world_model.state_dict().items():
        torch.testing.assert_close(tensor, tiny_world_model.state_dict()[name].half().float())
        assert tensor.dtype == tiny_world_model.state_dict()[name].dtype


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_checkpoint(tmp_path / "nope.safetensors")


def test_truncated_file(saved):
    data = saved.read_bytes()
    saved.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=f"{saved.name}.*(truncated|corrupt)"):
        load_checkpoint(saved)


def _rewrite(path, change_meta=None, drop=None, replace=None):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()[METADATA_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if change_meta:
        change_meta(meta)
    if drop:
        del tensors[drop]
    if replace:
        tensors.update(replace)
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})


def test_other_format_version(saved):
    _rewrite(saved, change_meta=lambda m: m.update(format_version=99))
    with pytest.raises(ValueError, match=f"{saved.name}.*format version 99"):
        load_checkpoint(saved)


def test_config_that_does_not_match_the_tensors(saved):
    def wider(meta):
        meta["config"]["denoiser"]["unet"]["channels"] = [16, 16]
    _rewrite(saved, change_meta=wider)
    with pytest.raises(ValueError, match=f"{saved.name}.*shape.*do not match"):
        load_checkpoint(saved)


def test_missing_tensor(saved):
    name = next(iter(WorldModel(tiny_world_model_config()).state_dict()))
    _rewrite(saved, drop=name)
    with pytest.raises(ValueError, match=f"{saved.name}.*missing tensor.*{name}"):
        load_checkpoint(saved)


def test_missing_start_bank(saved):
    _rewrite(saved, drop="start.frames")
    with pytest.raises(ValueError, match="start.frames"):
        load_checkpoint(saved)


def test_not_a_gym_diamond_file(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"x": torch.zeros(1)}, str(path))
    with pytest.raises(ValueError, match="not a gym-diamond checkpoint"):
        read_metadata(path)


def test_save_rejects_wrong_action_meanings(tmp_path, tiny_world_model, start_bank):
    with pytest.raises(ValueError, match="action meanings"):
        save_checkpoint(tmp_path / "x.safetensors", tiny_world_model, game="Pong", action_meanings=["NOOP"],
                        start_bank=start_bank)
