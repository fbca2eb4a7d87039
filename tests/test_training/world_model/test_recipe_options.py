"""The training options beside DIAMOND's recipe: the training-noise distribution, the learning rate with a moving
average of the weights, and a time budget that stops a run to be resumed."""

import io
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from helpers import ROOT

from gym_diamond import WorldModel, load_checkpoint, tiny_world_model_config
from gym_diamond.checkpoint import read_metadata
from training.data.dataset import EpisodeDataset
from training.runtime.progress import progress_bar
from training.runtime.state import load_state
from training.world_model.__main__ import main as world_model_main
from training.world_model.run import train_world_model
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig
from training.world_model.weight_average import WeightAverage


def drawn_log_sigmas(config: WorldModelTrainingConfig, pong_data, monkeypatch) -> torch.Tensor:
    """ln sigma of every training draw of 4 denoiser updates at batch 32 (256 draws)."""
    from gym_diamond import diffusion

    drawn = []
    original = diffusion.TrainingNoise.draw.__func__

    def spy(cls, shape, denoiser_config, generator=None, device="cpu"):
        noise = original(cls, shape, denoiser_config, generator, device)
        drawn.append(noise.sigma.log())
        return noise

    monkeypatch.setattr(diffusion.TrainingNoise, "draw", classmethod(spy))
    torch.manual_seed(0)
    trainer = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), EpisodeDataset(pong_data),
                                config)
    for _ in range(4):
        trainer.denoiser_step()  # two targets a sample: 2 x 32 draws an update
    return torch.cat(drawn)


def test_training_noise_distribution_follows_the_option(pong_data, monkeypatch):
    base = dict(batch_size=32, autoregressive_steps=1)
    diamond = drawn_log_sigmas(WorldModelTrainingConfig(**base), pong_data, monkeypatch)
    shifted = drawn_log_sigmas(WorldModelTrainingConfig(**base, train_sigma_loc=0.4, train_sigma_scale=1.0),
                               pong_data, monkeypatch)
    assert len(diamond) == len(shifted) == 256
    # 256 seeded draws: the standard error of the mean is scale / 16 (0.075 or less), of the std about scale / 23;
    # of the share above 2, 0.024 and 0.030: each tolerance is over 2.3 standard errors
    for drawn, loc, scale in ((diamond, -0.4, 1.2), (shifted, 0.4, 1.0)):
        assert drawn.mean().item() == pytest.approx(loc, abs=0.2)
        assert drawn.std().item() == pytest.approx(scale, abs=0.15)
    above_2 = [(s > math.log(2)).float().mean().item() for s in (diamond, shifted)]
    assert above_2[0] == pytest.approx(0.18, abs=0.06) and above_2[1] == pytest.approx(0.385, abs=0.07)
    with pytest.raises(ValueError, match="train_sigma_scale"):
        WorldModelTrainingConfig(train_sigma_scale=0.0)


def test_training_noise_is_written_into_the_checkpoint_and_kept_on_resume(pong_data, tmp_path):
    out = tmp_path / "run"
    args = ["--data", str(pong_data), "--out", str(out), "--model", "tiny", "--batch-size", "2", "--device", "cpu",
            "--rew-end-sequence-length", "4", "--train-sigma-loc", "0.4", "--train-sigma-scale", "1.0"]
    world_model_main([*args, "--steps", "1"])
    metadata = read_metadata(out / "world_model.safetensors")
    denoiser = metadata["config"]["denoiser"]
    assert (denoiser["train_sigma_loc"], denoiser["train_sigma_scale"]) == (0.4, 1.0)
    assert (metadata["provenance"]["train_sigma_loc"], metadata["provenance"]["train_sigma_scale"]) == (0.4, 1.0)
    with pytest.raises(SystemExit):  # another distribution on resume is refused, naming the flag
        world_model_main([*args[:-4], "--steps", "2"])


def test_context_length_builds_the_model_plays_in_gym_and_is_kept_on_resume(pong_data, tmp_path):
    """--context-length 8 trains a denoiser on 8 frames (tiny's 16 cond channels divide by it); the checkpoint records
    it, its start bank holds 8-frame contexts, the dream env steps; a resume with another length is refused."""
    import gymnasium as gym

    import gym_diamond  # noqa: F401

    out = tmp_path / "run"
    args = ["--data", str(pong_data), "--out", str(out), "--model", "tiny", "--batch-size", "2", "--device", "cpu",
            "--rew-end-sequence-length", "4", "--context-length", "8"]
    world_model_main([*args, "--steps", "1"])
    checkpoint = load_checkpoint(out / "world_model.safetensors")
    assert checkpoint.world_model.config.denoiser.context_length == 8 == checkpoint.provenance["context_length"]
    assert checkpoint.start_bank.frames.shape[1] == 8
    env = gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=out / "world_model.safetensors")
    env.reset(seed=0)
    assert env.step(np.array([0, 1]))[0].shape == (2, 64, 64, 3)
    env.close()
    with pytest.raises(SystemExit):
        world_model_main([*args[:-2], "--steps", "2"])  # the preset's 4 frames on resume
    with pytest.raises(ValueError, match="context_length=0 is invalid"):
        WorldModelTrainingConfig(context_length=0)
    with pytest.raises(ValueError, match="differs from the model's 4"):
        WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), EpisodeDataset(pong_data),
                          WorldModelTrainingConfig(context_length=8))


def test_weight_average_follows_its_warmed_up_decay():
    net = torch.nn.Linear(2, 1)
    average = WeightAverage(net, decay=0.9)
    start = net.weight.detach().clone()
    expected = start.clone()
    for n in range(30):
        with torch.no_grad():
            net.weight.add_(1.0)
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * net.weight.detach()
        average.update(net)
    assert torch.allclose(average.average["weight"], expected, atol=1e-5)
    assert not torch.allclose(average.average["weight"], net.weight)  # an average, not the last weights
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(net, decay=1.0)


def test_moving_average_is_exported_and_resumes_exactly(pong_data, tmp_path):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, lr=1e-3, warmup_steps=0,
                                      ema_decay=0.9)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, config=config, progress=False)
    straight = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "a", 4, save_every=100, **kwargs))
    train_world_model("Pong", pong_data, tmp_path / "b", 2, save_every=1, **kwargs)
    resumed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "b", 4, save_every=100, **kwargs))
    for (name, p), q in zip(straight.world_model.state_dict().items(), resumed.world_model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    trained = load_state(tmp_path / "a" / "train_state.safetensors")["model"]
    exported = straight.world_model.state_dict()
    weight = "denoiser.net.conv_out.weight"
    assert weight in trained and not torch.equal(trained[weight], exported[weight])  # the average is exported
    assert straight.provenance["ema_decay"] == 0.9 and straight.provenance["lr"] == 1e-3
    with pytest.raises(ValueError, match="lr"):
        other = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, lr=1e-4, warmup_steps=0,
                                         ema_decay=0.9)
        train_world_model("Pong", pong_data, tmp_path / "b", 5, **{**kwargs, "config": other})


def test_a_run_stopped_by_its_time_budget_resumes_to_the_same_weights(pong_data, tmp_path, capsys):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=5, config=config, save_every=2)
    straight = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "a", 6, progress=False, **kwargs))
    # a budget spent at once: the run stops at its first save (update 2) and exports what it has
    stopped = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "b", 6, time_budget=1e-9, **kwargs))
    assert stopped.provenance["denoiser_steps"] == 2
    assert "stopped at update 2 of 6" in capsys.readouterr().out
    train_world_model("Pong", pong_data, tmp_path / "b", 6, time_budget=1e-9, progress=False, **kwargs)  # to 4
    resumed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "b", 6, progress=False, **kwargs))
    assert resumed.provenance["denoiser_steps"] == 6
    for (name, p), q in zip(straight.world_model.state_dict().items(), resumed.world_model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name
    with pytest.raises(ValueError, match="time budget"):
        train_world_model("Pong", pong_data, tmp_path / "c", 6, time_budget=0, progress=False, **kwargs)


def test_progress_off_a_terminal_is_plain_lines():
    stream = io.StringIO()  # not a terminal
    bar = progress_bar(total=1000, desc="work", file=stream)
    for _ in range(1000):
        bar.update(1)
        bar.set_postfix(loss=np.float32(0.5), refresh=False)
    bar.close()
    text = stream.getvalue()
    assert "\r" not in text and text.endswith("\n")
    assert len(text.splitlines()) <= 3 and "1000/1000" in text.splitlines()[-1]


def test_nested_progress_off_a_terminal_leaves_no_cursor_moves_and_keeps_each_total():
    stream = io.StringIO()
    outer = progress_bar(total=2, desc="epochs", file=stream)
    for _ in range(2):
        for _ in progress_bar(range(5), desc="updates", leave=False, file=stream):  # vanishes on a terminal
            pass
        outer.update(1)
    outer.close()
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    assert text.count("updates: 100%") == 2 and "2/2" in text.splitlines()[-1]


def test_sigterm_saves_the_state_and_says_how_to_continue(pong_data, tmp_path):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.world_model", "--data", str(pong_data), "--out", str(out),
               "--steps", "100000", "--model", "tiny", "--batch-size", "2", "--rew-end-sequence-length", "4",
               "--device", "cpu", "--save-every", "100000"]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not ((out / "losses.csv").exists() and len((out / "losses.csv").read_text().splitlines()) > 1):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)  # to the pid this test started
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: the training state is saved" in err and "Traceback" not in err
    state = load_state(out / "train_state.safetensors")  # no save was due: the stop wrote it
    assert state["steps"]["denoiser"] >= 10


def test_a_named_recipe_sets_its_fields_and_flags_set_over_it(pong_data, tmp_path):
    cpu = WorldModelTrainingConfig.from_recipe("cpu")
    assert (cpu.changed_pixel_weight, cpu.train_sigma_loc, cpu.train_sigma_scale, cpu.recipe) == (20.0, 0.4, 1.0, "cpu")
    assert (cpu.lr, cpu.ema_decay) == (1e-3, 0.999)
    assert WorldModelTrainingConfig.from_recipe("diamond") == WorldModelTrainingConfig()  # DIAMOND's stays the default
    with pytest.raises(ValueError, match="unknown training recipe"):
        WorldModelTrainingConfig.from_recipe("gpu")
    out = tmp_path / "run"
    world_model_main(["--data", str(pong_data), "--out", str(out), "--model", "tiny", "--batch-size", "2",
                      "--device", "cpu", "--rew-end-sequence-length", "4", "--steps", "1", "--recipe", "cpu",
                      "--changed-pixel-weight", "5"])
    provenance = read_metadata(out / "world_model.safetensors")["provenance"]
    chosen = (provenance["recipe"], provenance["changed_pixel_weight"], provenance["train_sigma_loc"],
              provenance["lr"], provenance["ema_decay"])
    assert chosen == ("cpu", 5.0, 0.4, 1e-3, 0.999)


@pytest.mark.parametrize("option", ["context_erasure", "context_ghosts"])
def test_a_context_corruption_share_is_checked_and_recorded_only_when_on(option):
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match=option):
            WorldModelTrainingConfig(**{option: bad})
    assert option not in WorldModelTrainingConfig().run_settings()  # runs recorded before it resume
    assert WorldModelTrainingConfig(**{option: 0.5}).run_settings()[option] == 0.5
