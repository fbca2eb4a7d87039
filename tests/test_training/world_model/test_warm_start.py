"""A run that starts from an exported checkpoint (``--init-from``): its networks, update counts and CPU time go on."""

import dataclasses

import pytest
import torch
from helpers import real_breakout_data

from gym_diamond import load_checkpoint
from training.data.dataset import EpisodeDataset
from training.ship import ship
from training.world_model import __main__ as world_model_command
from training.world_model.run import train_world_model
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig
from training.world_model.warm_start import recorded_cpu_hours, warm_start

CONFIG = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, ema_decay=0.9, warmup_steps=2)
KWARGS = dict(model_preset="tiny", device="cpu", seed=3, progress=False, save_every=1)



@pytest.fixture(scope="module")
def exported(pong_data, tmp_path_factory):
    """A checkpoint of 3 updates of each network, exported with the weights' average."""
    return train_world_model("Pong", pong_data, tmp_path_factory.mktemp("parent"), 3, config=CONFIG, **KWARGS)


def _weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _trainer(pong_data, config=CONFIG, context_length=None) -> WorldModelTrainer:
    from gym_diamond import WorldModel
    from gym_diamond.config import MODEL_SIZES

    config = dataclasses.replace(config, context_length=context_length)
    model_config = MODEL_SIZES["tiny"](6)
    model = WorldModel(model_config.replace(denoiser=config.denoiser_config(model_config.denoiser)))
    return WorldModelTrainer(model, EpisodeDataset(pong_data, game="Pong"), config, seed=3)


def test_a_warm_start_takes_the_checkpoints_networks_counts_and_cpu_time(pong_data, exported):
    source = load_checkpoint(exported)
    trainer = _trainer(pong_data)
    actions = source.action_meanings
    warm_start(trainer, exported, game="Pong", action_meanings=actions)
    trained, averaged = trainer.model.state_dict(), trainer.exported_model().state_dict()
    for name, weight in source.world_model.state_dict().items():
        assert torch.equal(trained[name], weight), name
        assert torch.equal(averaged[name], weight), name  # the average starts there
    assert trainer.steps == {"denoiser": 3, "rew_end": 3} == trainer.warmup_from
    assert trainer.averages["denoiser"].updates == 3  # moves at the decay of update 3, not of a first update
    assert source.provenance["train_cpu_hours"] > 0
    assert trainer.cpu_seconds == pytest.approx(source.provenance["train_cpu_hours"] * 3600)
    before = _weights(trainer.model.denoiser)
    trainer.denoiser_step()  # the learning rate warms up again from 0: new Adam moments take no full step at once
    assert all(torch.equal(before[k], v) for k, v in trainer.model.denoiser.state_dict().items())
    trainer.denoiser_step()
    assert not all(torch.equal(before[k], v) for k, v in trainer.model.denoiser.state_dict().items())
    assert trainer.steps["denoiser"] == 5


def test_a_shipped_float16_dream_is_a_starting_point_too(pong_data, exported, tmp_path):
    shipped = ship(exported, tmp_path / "Pong.safetensors", denoising_steps=2, sampler_start="sigma_max")
    trainer = _trainer(pong_data)
    warm_start(trainer, shipped, game="Pong", action_meanings=load_checkpoint(shipped).action_meanings)
    half = load_checkpoint(shipped).world_model.state_dict()
    for name, weight in trainer.model.state_dict().items():
        assert weight.dtype == torch.float32 and torch.equal(weight, half[name].float()), name


@pytest.mark.slow
def test_a_run_from_a_checkpoint_counts_on_resumes_as_one_run_and_records_its_origin(pong_data, exported, tmp_path):
    config = dataclasses.replace(CONFIG, init_from=str(exported))
    one_run = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "one", 6, config=config, **KWARGS))
    assert one_run.provenance["denoiser_steps"] == 6 and one_run.provenance["init_from"] == str(exported)
    assert one_run.provenance["train_cpu_hours"] > load_checkpoint(exported).provenance["train_cpu_hours"]
    train_world_model("Pong", pong_data, tmp_path / "two", 4, config=config, log_every=1, **KWARGS)
    resumed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "two", 6, config=config, log_every=1,
                                                **KWARGS))
    for (name, p), q in zip(one_run.world_model.state_dict().items(), resumed.world_model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name  # the resume continued from its own state, not from the checkpoint again
    rows = (tmp_path / "two" / "losses.csv").read_text().splitlines()[1:]
    assert [row.split(",")[0] for row in rows] == ["4", "5", "6"]  # the log counts on from the checkpoint's 3


def test_a_warm_start_refuses_another_network_another_game_and_a_missing_file(pong_data, exported, tmp_path):
    with pytest.raises(ValueError, match="context_length"):
        warm_start(_trainer(pong_data, context_length=8), exported, game="Pong",
                   action_meanings=load_checkpoint(exported).action_meanings)
    with pytest.raises(ValueError, match="not of this data's Breakout"):
        warm_start(_trainer(pong_data), exported, game="Breakout", action_meanings=["NOOP", "FIRE", "RIGHT", "LEFT"])
    with pytest.raises(ValueError, match="no such checkpoint"):
        warm_start(_trainer(pong_data), tmp_path / "nowhere.safetensors", game="Pong", action_meanings=[])
    with pytest.raises(ValueError, match="not both"):
        dataclasses.replace(CONFIG, init_from=str(exported), branch_from=str(tmp_path))
    with pytest.raises(ValueError, match="Breakout"):  # the training command checks the data's game
        train_world_model("Breakout", real_breakout_data(tmp_path / "breakout").root, tmp_path / "b", 4, **KWARGS,
                          config=dataclasses.replace(CONFIG, init_from=str(exported)))


def test_the_training_noise_may_change_and_a_combined_checkpoint_reports_its_denoisers_cpu_time(pong_data, exported):
    trainer = _trainer(pong_data, dataclasses.replace(CONFIG, train_sigma_loc=0.4, train_sigma_scale=1.0))
    warm_start(trainer, exported, game="Pong", action_meanings=load_checkpoint(exported).action_meanings)
    assert trainer.steps["denoiser"] == 3
    assert recorded_cpu_hours({"combined": {"denoiser": {"train_cpu_hours": 1.5}, "rew_end": {}}}) == 1.5
    assert recorded_cpu_hours({"denoiser_steps": 10}) == 0.0  # written before the figure was


def test_the_command_line_passes_the_checkpoint_as_an_absolute_path(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(world_model_command, "train_world_model",
                        lambda *args, config, **kwargs: seen.setdefault("config", config) and tmp_path)
    monkeypatch.chdir(tmp_path)
    world_model_command.main(["--game", "Pong", "--data", str(tmp_path), "--out", "o", "--steps", "9",
                              "--init-from", "dream.safetensors"])
    assert seen["config"].init_from == str(tmp_path / "dream.safetensors")
