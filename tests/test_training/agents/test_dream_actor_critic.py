"""training.agents.dream_actor_critic: DIAMOND's actor-critic trained in a frozen dream, judged in the game and
the dream."""

import csv
import json

import numpy as np
import pytest
import torch
from helpers import PONG_ACTIONS, fixed_event_dream, make_tiny_checkpoint

from gym_diamond import save_checkpoint
from training.agents.checkpoints import load_actor_critic, read_actor_critic_provenance
from training.agents.dream_actor_critic import (
    DreamTrainingSettings,
    RunSettingsError,
    main,
    train_actor_critic_in_dream,
)
from training.agents.imagination import ImaginationConfig
from training.data.collect import main as collect


def tiny_settings(**changes) -> DreamTrainingSettings:
    base = dict(updates=4, eval_every=2, eval_episodes=2, eval_max_steps=30, dream_eval_steps=40, channels=(4, 4, 4, 4),
                lstm_dim=8, imagination=ImaginationConfig(batch_size=2, horizon=3, backup_every=3,
                                                          num_batches_to_preload=2, sample_weights=None))
    return DreamTrainingSettings(**{**base, **changes})


@pytest.fixture(scope="module")
def pong_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "pong"
    collect(["--game", "Pong", "--out", str(out), "--steps", "120", "--num-envs", "2"])
    return out


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_trains_judges_and_resumes(tmp_path, pong_data, one_thread):
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    out = tmp_path / "run"
    settings = tiny_settings()
    rows = train_actor_critic_in_dream(checkpoint, pong_data, out, settings, progress=False, stop_after=3)
    assert [r["update"] for r in rows] == [0, 2]  # judged before training and every 2 updates
    state_after_3 = load_actor_critic(out / "actor_critic.safetensors")  # the one judged at update 2
    rows = train_actor_critic_in_dream(checkpoint, pong_data, out, settings, progress=False)
    assert [r["update"] for r in rows] == [0, 2, 4]  # resumed at 3, not redone from 0
    written = read_rows(out / "evaluations.csv")
    assert [int(r["update"]) for r in written] == [0, 2, 4]
    assert float(written[2]["cpu_seconds"]) > float(written[1]["cpu_seconds"]) > 0
    for row in written:
        assert float(row["real_low"]) <= float(row["real_mean"]) <= float(row["real_high"])
        assert int(row["episodes"]) == 2 and float(row["real_mean_length"]) == 30  # cut at eval_max_steps
    assert (out / "learning_curve.png").stat().st_size > 10_000
    for update in (0, 2, 4):
        provenance = read_actor_critic_provenance(out / "agents" / f"actor_critic_{update}.safetensors")
        assert provenance["updates"] == update and provenance["trained_in"] == "dream"
        assert provenance["real_game"]["real_mean"] == float(written[update // 2]["real_mean"])
    final = load_actor_critic(out / "actor_critic.safetensors")
    changed = [not torch.equal(a, b) for a, b in zip(state_after_3.state_dict().values(),
                                                     final.state_dict().values(), strict=True)]
    assert any(changed)  # updates 3 and 4 trained on after the resume


def test_a_run_folder_refuses_other_settings_but_may_train_longer(tmp_path, pong_data, one_thread):
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    out = tmp_path / "run"
    train_actor_critic_in_dream(checkpoint, pong_data, out, tiny_settings(updates=1), progress=False)
    with pytest.raises(RunSettingsError, match="lstm_dim"):
        train_actor_critic_in_dream(checkpoint, pong_data, out, tiny_settings(updates=1, lstm_dim=16), progress=False)
    rows = train_actor_critic_in_dream(checkpoint, pong_data, out, tiny_settings(updates=2), progress=False)
    assert [r["update"] for r in rows] == [0, 1, 2]  # the end of the first run was judged, and the new end
    assert json.loads((out / "config.json").read_text())["updates"] == 2
    make_tiny_checkpoint(checkpoint, seed=1)  # another dream saved over the same file
    with pytest.raises(RunSettingsError, match="another world model"):
        train_actor_critic_in_dream(checkpoint, pong_data, out, tiny_settings(updates=3), progress=False)


def test_the_dream_rate_is_measured_in_the_dream(tmp_path, pong_data, one_thread):
    """A dream that rewards every step shows 1,000 reward signs per 1,000 steps; the real game far fewer."""
    model, bank = fixed_event_dream(reward=1, terminates=False)
    checkpoint = tmp_path / "Pong.safetensors"
    save_checkpoint(checkpoint, model, game="Pong", action_meanings=PONG_ACTIONS, start_bank=bank)
    rows = train_actor_critic_in_dream(checkpoint, pong_data, tmp_path / "run", tiny_settings(updates=0),
                                       progress=False)
    assert len(rows) == 1
    assert rows[0]["dream_sign_rate"] == 1000.0
    assert rows[0]["real_sign_rate"] <= 1000.0 / 30  # at most one point in 30 real steps


def test_settings_and_command_line_errors(tmp_path, pong_data, capsys):
    with pytest.raises(ValueError, match="eval_episodes must be >= 1"):
        tiny_settings(eval_episodes=0)
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(tmp_path / "missing.safetensors"), "--data", str(pong_data), "--out",
              str(tmp_path / "run"), "--updates", "1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.safetensors" in err and "Traceback" not in err
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no episodes"):
        train_actor_critic_in_dream(make_tiny_checkpoint(tmp_path / "Pong.safetensors"), empty, tmp_path / "run2",
                                    tiny_settings(), progress=False)


def test_the_real_game_control_trains_on_real_steps(tmp_path, one_thread):
    out = tmp_path / "real"
    settings = tiny_settings(updates=2, train_in="real", dream_eval_steps=0)
    rows = train_actor_critic_in_dream(None, None, out, settings, game="Pong", progress=False)
    assert [(r["update"], r["agent_steps"]) for r in rows] == [(0, 0), (2, 12)]  # 2 games x 3 steps per update
    assert np.isnan(rows[-1]["dream_sign_rate"])  # no dream to measure in
    provenance = read_actor_critic_provenance(out / "actor_critic.safetensors")
    assert provenance["trained_in"] == "real" and provenance["world_model"] is None
    with pytest.raises(ValueError, match="needs the world model"):
        train_actor_critic_in_dream(None, None, tmp_path / "dream", tiny_settings(), progress=False)
    with pytest.raises(ValueError, match="name the game"):
        train_actor_critic_in_dream(None, None, tmp_path / "x", settings, progress=False)


def test_the_control_trains_in_any_environment_from_the_command_line(tmp_path, one_thread, capsys):
    pytest.importorskip("minigrid")
    out = tmp_path / "maze"
    main(["--train-in", "real", "--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper",
          "minigrid.wrappers:RGBImgObsWrapper", "--out", str(out), "--updates", "2", "--eval-every", "0",
          "--eval-episodes", "2", "--dream-eval-steps", "0", "--channels", "4", "4", "4", "4", "--lstm-dim", "8",
          "--batch-size", "2", "--horizon", "3", "--device", "cpu"])
    rows = read_rows(out / "evaluations.csv")
    assert [int(r["update"]) for r in rows] == [0, 2]
    assert all(int(r["episodes"]) == 2 and 0 <= float(r["real_mean"]) <= 1 for r in rows)  # MiniGrid's returns
    config = json.loads((out / "config.json").read_text())
    assert config["game"] == "MiniGrid-Empty-5x5-v0" and config["environment"]["wrappers"] == [
        "minigrid.wrappers:RGBImgObsWrapper"]
    assert "best real score" in capsys.readouterr().out


def test_real_game_env_of_any_environment_hands_over_final_frames():
    pytest.importorskip("minigrid")
    from training.agents.real_game_env import RealGameEnv
    from training.data.environments import RealEnvironment

    maze = RealEnvironment(env_id="minigrid:MiniGrid-Empty-5x5-v0", wrappers=("minigrid.wrappers:RGBImgObsWrapper",))
    env = RealGameEnv(maze, 3, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (3, 3, 64, 64)
    ends = 0
    for _ in range(120):  # MiniGrid-Empty-5x5 cuts an episode at 100 steps
        obs, reward, terminated, truncated, info = env.step(torch.randint(0, 3, (3,)))
        ended = terminated | truncated
        if ended.any():
            ends += 1
            assert info["final_observation"].shape == (ended.sum(), 3, 64, 64)
    env.close()
    assert ends > 0


def test_real_game_env_keeps_the_dream_contract():
    from training.agents.real_game_env import RealGameEnv

    env = RealGameEnv("Pong", 2, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (2, 3, 64, 64) and obs.dtype == torch.float32 and -1 <= obs.min() <= obs.max() <= 1
    signs, ended = [], 0
    for _ in range(300):  # random play loses a Pong point within ~100 steps
        obs, reward, terminated, truncated, info = env.step(torch.randint(0, 6, (2,)))
        signs += reward.tolist()
        assert reward.dtype == torch.float32 and terminated.dtype == torch.bool
        if (terminated | truncated).any():
            ended += 1
            assert info["final_observation"].shape == ((terminated | truncated).sum(), 3, 64, 64)
    env.close()
    assert set(signs) <= {-1.0, 0.0, 1.0} and -1.0 in signs
    assert env.steps == 600


def test_each_training_log_row_is_the_mean_over_its_updates(tmp_path, pong_data, one_thread, monkeypatch):
    """A row of training.csv averages the updates since the row before, not its last update's scalars alone."""
    from training.agents.imagination import ImaginationTrainer

    def scripted_step(self):
        self.steps += 1
        return {"loss_actor": float(self.steps), "entropy": 2.0 * self.steps}

    monkeypatch.setattr(ImaginationTrainer, "step", scripted_step)
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    train_actor_critic_in_dream(checkpoint, pong_data, tmp_path / "run", tiny_settings(updates=6, eval_every=6),
                                progress=False, log_every=3)
    rows = read_rows(tmp_path / "run" / "training.csv")
    assert [(int(r["update"]), float(r["loss_actor"]), float(r["entropy"])) for r in rows] == \
        [(3, 2.0, 4.0), (6, 5.0, 10.0)]
