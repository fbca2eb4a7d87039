"""benchmarks/transfer.py: the dream's agent, random play and the real-step control, judged on the same episodes."""

import json
import os
import signal

import pytest
from helpers import load_benchmark

pytest.importorskip("minigrid")
pytestmark = pytest.mark.slow  # a whole pipeline and a control: `pytest -m "not slow"` skips it


def load_script():
    return load_benchmark("transfer")


def test_three_agents_are_judged_on_the_same_episodes_and_the_control_sees_the_pipelines_real_steps(
        tmp_path, capsys, one_thread):
    out = tmp_path / "transfer"
    args = ["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
            "--preset", "micro", "--out", str(out), "--episodes", "3", "--dream-steps", "16"]
    load_script().main(args)
    summary = json.loads((out / "transfer.json").read_text())
    agents = summary["agents"]
    assert set(agents) == {"dream", "random", "real_control"}
    for record in agents.values():
        assert record["episodes"] == 3 and record["ci95"][0] <= record["mean"] <= record["ci95"][1]
        assert 0 <= record["success_ci95"][0] <= record["success"] <= record["success_ci95"][1] <= 1
    assert "dream_sign_rate" in agents["dream"] and "dream_sign_rate" not in agents["real_control"]
    # the control learnt from at least the real steps the world model saw, in whole updates of batch x 3 steps
    assert summary["real_steps"] <= agents["real_control"]["real_steps"] < summary["real_steps"] + 2 * 3
    assert (out / "learning_curve.png").stat().st_size > 5_000
    printed = capsys.readouterr().out
    assert printed.count("| minigrid:MiniGrid-Empty-5x5-v0 |") == 3 and "dream agent beats random" in printed
    load_script().main(args)  # every stage resumes: the finished run is judged again, nothing retrained
    assert json.loads((out / "transfer.json").read_text())["agents"]["real_control"] == agents["real_control"]


def test_an_sb3_agent_is_judged_against_the_same_algorithm_trained_on_as_many_real_steps(tmp_path, capsys, one_thread):
    from stable_baselines3 import PPO

    from training.presets import get_preset

    out = tmp_path / "transfer"
    args = ["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper", "minigrid.wrappers:RGBImgObsWrapper",
            "--preset", "micro", "--out", str(out), "--episodes", "2", "--dream-steps", "16", "--agent", "ppo"]
    load_script().main(args)
    summary = json.loads((out / "transfer.json").read_text())
    assert summary["agent"] == "PPO" and summary["imagined_steps"] > 0
    control = PPO.load(out / "real" / "sb3_model.zip")
    imagination = get_preset("micro").imagination
    rollout = imagination.batch_size * imagination.backup_every  # the pipeline's PPO settings, on real environments
    assert control.n_envs == imagination.batch_size and control.n_steps == imagination.backup_every
    assert summary["real_steps"] <= summary["agents"]["real_control"]["real_steps"] < summary["real_steps"] + rollout
    assert summary["agents"]["real_control"]["real_steps"] == control.num_timesteps
    assert {record["episodes"] for record in summary["agents"].values()} == {2}
    printed = capsys.readouterr().out
    assert "| PPO, dream only |" in printed and f"| PPO, {control.num_timesteps} real steps |" in printed
    load_script().main(args)  # resumed: the control is not trained again
    assert PPO.load(out / "real" / "sb3_model.zip").num_timesteps == control.num_timesteps


def test_a_transfer_stopped_by_sigterm_says_how_to_continue(tmp_path, capsys, one_thread, monkeypatch):
    from training.world_model.trainer import WorldModelTrainer

    original = WorldModelTrainer.denoiser_step

    def terminated(self):
        os.kill(os.getpid(), signal.SIGTERM)  # during the first denoiser update: it ends, the run saves and stops
        return original(self)

    monkeypatch.setattr(WorldModelTrainer, "denoiser_step", terminated)
    out = tmp_path / "transfer"
    with pytest.raises(SystemExit) as stopped:
        load_script().main(["--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--wrapper",
                            "minigrid.wrappers:RGBImgObsWrapper", "--preset", "micro", "--out", str(out)])
    assert stopped.value.code == 130 and "run the same command to continue" in capsys.readouterr().err
    assert json.loads((out / "dream" / "progress.json").read_text())["partial"]["done"] == {"denoiser": 1}
