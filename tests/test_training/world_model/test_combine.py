"""Combining the denoiser of one checkpoint with the reward/termination model of another."""

import pytest
import torch
from helpers import make_tiny_checkpoint

from gym_diamond import WorldModel, load_checkpoint, save_checkpoint
from gym_diamond.config import RewEndConfig
from training.world_model.combine import combine_checkpoints, main


def test_each_network_comes_from_its_file(tmp_path):
    collection = [{"policy": "BallFollower", "steps": 150000}]
    a = make_tiny_checkpoint(tmp_path / "a.safetensors", provenance={"dataset_steps": 150000,
                                                                     "data_collection": collection})
    b = make_tiny_checkpoint(tmp_path / "b.safetensors", seed=1, provenance={"denoiser_steps": 7, "rew_end_steps": 9,
                                                                            "dataset_steps": 40})
    out = combine_checkpoints(a, b, tmp_path / "c.safetensors")
    A, B, C = (load_checkpoint(p) for p in (a, b, out))
    for name, t in C.world_model.denoiser.state_dict().items():
        assert torch.equal(t, A.world_model.denoiser.state_dict()[name]), name
    for name, t in C.world_model.rew_end.state_dict().items():
        assert torch.equal(t, B.world_model.rew_end.state_dict()[name]), name
    assert not torch.equal(next(C.world_model.rew_end.parameters()), next(A.world_model.rew_end.parameters()))
    assert (C.start_bank.frames == A.start_bank.frames).all()
    assert C.provenance["rew_end_steps"] == 9
    assert C.provenance["combined"]["rew_end"]["file"] == str(b)
    # the dream's data, the denoiser's, at the top
    assert C.provenance["dataset_steps"] == 150000 and C.provenance["data_collection"] == collection


def test_a_reward_model_of_another_size_is_taken_with_its_config(tmp_path):
    a = make_tiny_checkpoint(tmp_path / "a.safetensors")
    A = load_checkpoint(a)
    config = A.config.replace(rew_end=RewEndConfig(channels=(8, 8, 8, 8), blocks_per_level=1, cond_channels=16,
                                                    lstm_dim=32))
    torch.manual_seed(3)
    other = save_checkpoint(tmp_path / "b.safetensors", WorldModel(config).eval(), game=A.game,
                            action_meanings=A.action_meanings, start_bank=A.start_bank)
    C = load_checkpoint(combine_checkpoints(a, other, tmp_path / "c.safetensors"))
    assert C.config.rew_end.lstm_dim == 32 and C.config.denoiser == A.config.denoiser


def test_world_models_of_different_games_do_not_combine(tmp_path, capsys):
    a = make_tiny_checkpoint(tmp_path / "a.safetensors")
    A = load_checkpoint(a)
    b = save_checkpoint(tmp_path / "b.safetensors", A.world_model, game="Breakout",
                        action_meanings=A.action_meanings, start_bank=A.start_bank)
    with pytest.raises(ValueError, match="game differ"):
        combine_checkpoints(a, b, tmp_path / "c.safetensors")
    with pytest.raises(SystemExit):
        main(["--denoiser", str(a), "--rew-end", str(b), "--out", str(tmp_path / "c.safetensors")])
    assert "game differ" in capsys.readouterr().err
    assert not (tmp_path / "c.safetensors").exists()
