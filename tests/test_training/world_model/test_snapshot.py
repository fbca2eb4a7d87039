"""A snapshot of a run exports what the run itself exports at the same update."""

import json

import numpy as np
import pytest
import torch

from gym_diamond import load_checkpoint
from training.runtime.state import load_state
from training.world_model.run import train_world_model
from training.world_model.snapshot import main as snapshot_main
from training.world_model.snapshot import snapshot_run
from training.world_model.training_config import WorldModelTrainingConfig


def assert_same_checkpoint(a, b) -> None:
    for (name, p), q in zip(a.world_model.state_dict().items(), b.world_model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    np.testing.assert_array_equal(a.start_bank.frames, b.start_bank.frames)
    np.testing.assert_array_equal(a.start_bank.actions, b.start_bank.actions)
    assert {**a.provenance, "date": None} == {**b.provenance, "date": None}


def test_a_snapshot_is_the_checkpoint_the_run_exports(pong_data, tmp_path):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, lr=1e-3, warmup_steps=0,
                                      ema_decay=0.9, changed_pixel_weight=5.0)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, config=config, progress=False, save_every=2)
    exported = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "run", 4, **kwargs))
    snapshot = load_checkpoint(snapshot_run(tmp_path / "run", tmp_path / "snap.safetensors"))
    assert snapshot.provenance["denoiser_steps"] == 4 and snapshot.provenance["changed_pixel_weight"] == 5.0
    assert_same_checkpoint(exported, snapshot)  # the weights' average, not the trained weights
    trained = load_checkpoint(snapshot_run(tmp_path / "run", tmp_path / "trained.safetensors", trained_weights=True))
    state = load_state(tmp_path / "run" / "train_state.safetensors")["model"]
    for name, weight in trained.world_model.state_dict().items():
        assert torch.equal(weight, state[name]), name
    assert not all(torch.equal(weight, state[name]) for name, weight in snapshot.world_model.state_dict().items())
    assert trained.provenance["denoiser_steps"] == 4


def test_a_snapshot_of_a_run_trained_in_phases(pong_data, tmp_path, capsys):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=1, config=config, progress=False, save_every=1)
    train_world_model("Pong", pong_data, tmp_path / "run", 2, networks="denoiser", **kwargs)
    exported = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "run", 3, networks="rew_end", **kwargs))
    snapshot_main([str(tmp_path / "run"), "--out", str(tmp_path / "snap.safetensors")])
    assert "snap.safetensors" in capsys.readouterr().out
    snapshot = load_checkpoint(tmp_path / "snap.safetensors")
    assert (snapshot.provenance["denoiser_steps"], snapshot.provenance["rew_end_steps"]) == (2, 3)
    assert_same_checkpoint(exported, snapshot)


def test_a_snapshot_needs_a_saved_state_of_one_run(pong_data, tmp_path):
    with pytest.raises(ValueError, match="no run settings"):
        snapshot_run(tmp_path, tmp_path / "snap.safetensors")
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    train_world_model("Pong", pong_data, tmp_path / "run", 1, model_preset="tiny", device="cpu", config=config,
                      progress=False, networks="denoiser")
    (tmp_path / "run" / "train_state.safetensors").rename(tmp_path / "state")
    with pytest.raises(ValueError, match="no training state yet"):
        snapshot_run(tmp_path / "run", tmp_path / "snap.safetensors")
    (tmp_path / "state").rename(tmp_path / "run" / "train_state.safetensors")
    settings = json.loads((tmp_path / "run" / "config.json").read_text())
    settings["rew_end"] = {**settings["denoiser"], "seed": 7}
    (tmp_path / "run" / "config.json").write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="does not name one game"):
        snapshot_run(tmp_path / "run", tmp_path / "snap.safetensors")
