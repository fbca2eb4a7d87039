"""training.agents.sb3: any SB3 algorithm in a dream, real-game evaluation, save/load, resume, errors."""

import csv
import json
import tempfile

import numpy as np
import pytest
import torch
from helpers import PONG_ACTIONS, fixed_event_dream
from safetensors.torch import load_model
from stable_baselines3 import DQN, PPO

from gym_diamond import save_checkpoint
from training.agents.sb3 import algorithm_class, main, train_sb3_agent
from training.runtime.run_folder import RunSettingsError

PPO_SMALL = {"n_steps": 32, "batch_size": 64, "n_epochs": 1}


def test_ppo_trains_evaluates_in_real_pong_and_saves(pong_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "system_tmp"))  # where SB3 would make SB3-<date>
    (tmp_path / "system_tmp").mkdir()
    run = train_sb3_agent(pong_checkpoint, algo="ppo", steps=256, out=tmp_path, num_envs=4, algo_kwargs=PPO_SMALL,
                          eval_every=128, eval_episodes=1, eval_max_steps=40, progress=False)
    assert run.model.num_timesteps == 256
    with (tmp_path / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [128, 256]
    assert all(-40 <= float(r["mean_return"]) <= 40 for r in rows)  # at most one point per real step
    # one episode: the bootstrap interval is the score itself; Pong's points are its reward signs
    assert all(float(r["low_return"]) == float(r["mean_return"]) == float(r["high_return"]) for r in rows)
    assert all(float(r["sign_rate"]) == 1000 * float(r["mean_return"]) / 40 for r in rows)
    assert run.evaluations[-1]["step"] == 256
    with (tmp_path / "sb3_log" / "progress.csv").open() as f:  # SB3's log, in the run folder
        assert int(list(csv.DictReader(f))[-1]["time/total_timesteps"]) == 256
    assert list((tmp_path / "system_tmp").glob("SB3-*")) == []  # no SB3 log folder left in the system's temp

    loaded = PPO.load(run.model_path, device="cpu")
    obs = np.random.default_rng(0).integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    expected = run.model.policy.get_distribution(run.model.policy.obs_to_tensor(obs)[0]).distribution.probs
    got = loaded.policy.get_distribution(loaded.policy.obs_to_tensor(obs)[0]).distribution.probs
    torch.testing.assert_close(got, expected)

    meta = json.loads((tmp_path / "policy.json").read_text())
    assert meta["algo"] == "PPO" and meta["num_timesteps"] == 256 and meta["observation_shape"] == [3, 64, 64]
    with torch.no_grad():  # the pickle-free copy restores the same policy
        for p in loaded.policy.parameters():
            p.add_(1.0)
    load_model(loaded.policy, str(tmp_path / "policy.safetensors"))
    got = loaded.policy.get_distribution(loaded.policy.obs_to_tensor(obs)[0]).distribution.probs
    torch.testing.assert_close(got, expected)


def test_the_dream_rate_is_measured_in_the_dream(tmp_path, one_thread):
    """A dream that rewards every step shows 1,000 reward signs per 1,000 training steps; the real game far fewer."""
    model, bank = fixed_event_dream(reward=1, terminates=False)
    checkpoint = save_checkpoint(tmp_path / "Pong.safetensors", model, game="Pong", action_meanings=PONG_ACTIONS,
                                 start_bank=bank)
    train_sb3_agent(checkpoint, algo="ppo", steps=64, out=tmp_path / "run", num_envs=2, algo_kwargs=PPO_SMALL,
                    eval_every=32, eval_episodes=1, eval_max_steps=30, progress=False)
    with (tmp_path / "run" / "eval.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [32, 64]
    assert all(float(r["dream_sign_rate"]) == 1000.0 for r in rows)
    assert all(float(r["sign_rate"]) <= 1000.0 / 30 for r in rows)
    cpu = [float(r["cpu_seconds"]) for r in rows]
    assert 0 < cpu[0] < cpu[1]
    train_sb3_agent(checkpoint, algo="ppo", steps=96, out=tmp_path / "run", num_envs=2, algo_kwargs=PPO_SMALL,
                    eval_every=32, eval_episodes=1, eval_max_steps=30, progress=False)  # resumed: counts on
    with (tmp_path / "run" / "eval.csv").open() as f:
        assert float(list(csv.DictReader(f))[-1]["cpu_seconds"]) > cpu[1]


def test_rerun_resumes_from_the_saved_model(pong_checkpoint, tmp_path):
    kwargs = dict(algo="a2c", out=tmp_path, num_envs=2, algo_kwargs={"n_steps": 8}, eval_episodes=0, progress=False)
    first = train_sb3_agent(pong_checkpoint, steps=64, **kwargs)
    assert first.model.num_timesteps == 64 and not (tmp_path / "eval.csv").exists()
    saved = {k: v.clone() for k, v in first.model.policy.state_dict().items()}
    again = train_sb3_agent(pong_checkpoint, steps=64, **kwargs)  # already done: nothing more to learn
    assert again.model.num_timesteps == 64
    for k, v in again.model.policy.state_dict().items():
        torch.testing.assert_close(v, saved[k])
    longer = train_sb3_agent(pong_checkpoint, steps=96, **kwargs)
    assert longer.model.num_timesteps == 96  # continued from 64, not restarted
    with pytest.raises(RunSettingsError, match=r"other settings \(algo_kwargs, frame_stack\)"):
        train_sb3_agent(pong_checkpoint, steps=128, **{**kwargs, "algo_kwargs": {"n_steps": 16}}, frame_stack=2)


def test_cli_dqn_with_frame_stack(pong_checkpoint, tmp_path, capsys):
    main(["--algo", "DQN", "--checkpoint", str(pong_checkpoint), "--steps", "48", "--out", str(tmp_path),
          "--num-envs", "2", "--frame-stack", "2", "--eval-episodes", "0",
          "--algo-kwargs", json.dumps({"learning_starts": 16, "train_freq": 4})])
    assert "model:" in capsys.readouterr().out
    model = DQN.load(tmp_path / "model.zip", device="cpu")
    assert model.observation_space.shape == (6, 64, 64)  # 2 stacked RGB frames, channels first for the CNN
    assert model.replay_buffer is None or model.buffer_size == 48  # buffer sized to the run, not 1M frames


def test_bad_input_is_explained(pong_checkpoint, tmp_path):
    with pytest.raises(ValueError, match="did you mean ppo"):
        algorithm_class("ppp")
    with pytest.raises(ValueError, match="SAC cannot train"):
        train_sb3_agent(pong_checkpoint, algo="sac", steps=10, out=tmp_path, eval_episodes=0, progress=False)
    with pytest.raises(ValueError, match="frame_stack"):
        train_sb3_agent(pong_checkpoint, steps=10, out=tmp_path, frame_stack=0, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train_sb3_agent(pong_checkpoint, steps=0, out=tmp_path)
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(pong_checkpoint), "--steps", "8", "--algo-kwargs", "{not json"])


def test_on_policy_steps_round_up_to_whole_rollouts_with_a_warning(pong_checkpoint, tmp_path):
    kwargs = dict(algo="a2c", out=tmp_path, num_envs=2, algo_kwargs={"n_steps": 8}, eval_episodes=0, progress=False)
    with pytest.warns(UserWarning, match="16 steps per rollout .* it will take 48 steps, not 40"):
        run = train_sb3_agent(pong_checkpoint, steps=40, **kwargs)
    assert run.model.num_timesteps == 48  # what the warning announced
