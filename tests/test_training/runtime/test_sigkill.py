"""Every resumable command, killed with SIGKILL as in life, then run again: the result is whole.

Each command runs as a subprocess (``tests/kill_driver.py``) and is killed either at its n-th file write
(while writing, with the temp file whole but not renamed, or just after a rename) or after a delay;
the same command then runs again. Checked: it completes, its files load, no data is duplicated or
missing, and where the command is deterministic the result equals an uninterrupted run's.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import KILL_DRIVER, run_command_here
from safetensors.torch import load_file

from gym_diamond import load_checkpoint
from training.agents.checkpoints import load_actor_critic
from training.data.dataset import EpisodeDataset

pytestmark = pytest.mark.slow  # subprocesses or real training: `pytest -m "not slow"` skips it


KILLED = -signal.SIGKILL


def run(module: str, args: list[str], cwd: Path, kill: tuple | None = None) -> int:
    """Run ``python -m module args`` with one thread, in a subprocess to kill: ``kill`` is (mode, n) for the n-th file
    write or ("after", seconds); without ``kill``, in this process (``run_command_here``)."""
    if kill is None:
        run_command_here(module, args)
        print(f"[sigkill] {module} -> finished")
        return 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if kill is not None and kill[0] != "after":
        env.update(KILL_MODE=kill[0], KILL_AT=str(kill[1]))
    proc = subprocess.Popen([sys.executable, str(KILL_DRIVER), module, *args], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill is not None and kill[0] == "after":
        try:
            proc.wait(timeout=kill[1])
        except subprocess.TimeoutExpired:
            proc.kill()  # SIGKILL, to this pid only
    _, err = proc.communicate(timeout=600)
    outcome = "finished" if proc.returncode == 0 else "killed" if proc.returncode == KILLED else proc.returncode
    print(f"[sigkill] {module} kill={kill} -> {outcome}")  # the matrix, with pytest -s
    if kill[0] != "after":
        assert proc.returncode == KILLED, f"the kill point was never reached ({proc.returncode}):\n{err[-2000:]}"
    return proc.returncode


def episode_hashes(root: Path) -> list[str]:
    dataset = EpisodeDataset(root)
    hashes = []
    for i in range(len(dataset)):
        ep = dataset.episode(i)  # loads: a half-written episode would fail here
        hashes.append(hashlib.sha256(ep.frames.tobytes() + ep.actions.tobytes()).hexdigest())
    return hashes


def assert_whole_dataset(root: Path) -> EpisodeDataset:
    hashes = episode_hashes(root)
    assert len(set(hashes)) == len(hashes), "an episode was stored twice"
    listed = {f.name for f in (root / "episodes").glob("*.npz")}
    dataset = EpisodeDataset(root)
    assert listed == {Path(f).name for f in dataset._files}, "episode files outside the index"
    return dataset


# ------------------------------------------------------------------------------------------ collect

# writes: each finished episode's file, then the index
COLLECT_KILLS = [("mid-write", 3), ("after-rename", 5), ("before-rename", 6)]


@pytest.mark.parametrize("kill", COLLECT_KILLS, ids=lambda k: f"{k[0]}-{k[1]}")
def test_collect_killed_then_rerun_holds_exactly_the_steps_asked(tmp_path, kill):
    args = ["--game", "Breakout", "--out", str(tmp_path / "data"), "--steps", "400", "--num-envs", "2"]
    run("training.data.collect", args, tmp_path, kill)
    run("training.data.collect", args, tmp_path)
    dataset = assert_whole_dataset(tmp_path / "data")
    assert dataset.num_steps == 400  # not 400 more: the rerun finished the job


def test_collect_of_a_finished_job_adds_nothing_and_append_adds(tmp_path, capsys):
    from training.data.collect import main as collect

    args = ["--game", "Breakout", "--out", str(tmp_path / "data"), "--steps", "150", "--num-envs", "2"]
    collect([*args[:5], "101", *args[6:]])
    assert EpisodeDataset(tmp_path / "data").num_steps == 101  # exact, though 2 games step together
    collect(args)
    assert "holds 101 of 150 transitions: collecting the 49 missing" in capsys.readouterr().out
    collect(args)
    assert "nothing to collect" in capsys.readouterr().out
    collect([*args[:5], "30", *args[6:], "--append"])
    assert assert_whole_dataset(tmp_path / "data").num_steps == 180  # more data only when asked


# ----------------------------------------------------------------------------- world-model training


@pytest.fixture(scope="module")
def pong_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("sigkill_data")
    from training.data.collect import main as collect

    collect(["--game", "Pong", "--out", str(root / "data"), "--steps", "300"])
    return root / "data"


def wm_args(data: Path, out: Path) -> list[str]:
    return ["--game", "Pong", "--data", str(data), "--out", str(out), "--steps", "6", "--model", "tiny",
            "--batch-size", "2", "--rew-end-sequence-length", "3", "--save-every", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def uninterrupted_world_model(pong_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("wm_whole")
    run("training.world_model", wm_args(pong_dataset, out / "run"), out)
    return out / "run"


# writes: train_state at updates 2, 4, 6 (#1-#3), then world_model.safetensors (#4)
@pytest.mark.parametrize("kill", [("after-rename", 1), ("mid-write", 2), ("mid-write", 4), ("after", 4.0)],
                         ids=lambda k: f"{k[0]}-{k[1]}")
def test_world_model_training_killed_then_rerun_equals_an_uninterrupted_run(pong_dataset, uninterrupted_world_model,
                                                                           tmp_path, kill):
    run("training.world_model", wm_args(pong_dataset, tmp_path / "run"), tmp_path, kill)
    run("training.world_model", wm_args(pong_dataset, tmp_path / "run"), tmp_path)
    resumed = load_checkpoint(tmp_path / "run" / "world_model.safetensors")
    whole = load_checkpoint(uninterrupted_world_model / "world_model.safetensors")
    assert resumed.provenance["denoiser_steps"] == 6
    for (name, a), b in zip(whole.world_model.state_dict().items(), resumed.world_model.state_dict().values(),
                            strict=True):
        assert torch.equal(a, b), name
    def logged(run_dir: Path) -> list[str]:
        return [line.split(",")[0] for line in (run_dir / "losses.csv").read_text().splitlines()[1:]]

    assert logged(tmp_path / "run") == logged(uninterrupted_world_model)  # no step logged twice or lost


# ------------------------------------------------------------------------------------------ pipeline


# writes (micro preset): config, episodes and index while collecting (#2-#7), progress (#8), the training state
# then progress after each epoch (#9-#16), world model (#17), actor-critic (#18), progress, report
@pytest.mark.parametrize("kill", [("mid-write", 4), ("after-rename", 9), ("before-rename", 14), ("mid-write", 17)],
                         ids=lambda k: f"{k[0]}-{k[1]}")
def test_pipeline_killed_then_rerun_completes_without_duplicated_data(tmp_path, kill):
    args = ["--game", "Breakout", "--preset", "micro", "--out", str(tmp_path / "run"), "--device", "cpu"]
    run("training.pipeline", args, tmp_path, kill)
    run("training.pipeline", args, tmp_path)
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["epochs"] == 2
    assert report["world_model_updates"] == {"denoiser": 4, "rew_end": 4} and report["actor_critic_updates"] == 2
    dataset = assert_whole_dataset(tmp_path / "run" / "data")
    assert report["dataset_episodes"] == len(dataset)
    assert load_checkpoint(report["world_model"]).game == "Breakout"
    load_actor_critic(report["actor_critic"])
    for stage in ("collect", "world_model", "actor_critic"):
        rows = (tmp_path / "run" / f"{stage}.csv").read_text().splitlines()
        assert [r.split(",")[0] for r in rows[1:]] == ["1", "2"], stage


# ------------------------------------------------------------------------------------------ sb3_agent


@pytest.fixture(scope="module")
def tiny_dream(tmp_path_factory):
    from helpers import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("sb3_dream") / "Pong.safetensors")


# writes: model.zip, policy.safetensors, policy.json at 32, 64 and 96 steps
@pytest.mark.parametrize("kill", [("mid-write", 1), ("before-rename", 8), ("after", 5.0)],
                         ids=lambda k: f"{k[0]}-{k[1]}")
def test_sb3_agent_killed_then_rerun_finishes_with_a_loadable_model(tiny_dream, tmp_path, kill):
    args = ["--algo", "ppo", "--checkpoint", str(tiny_dream), "--steps", "96", "--out", str(tmp_path / "run"),
            "--num-envs", "2", "--algo-kwargs", '{"n_steps": 16, "batch_size": 16, "n_epochs": 1}',
            "--eval-every", "32", "--eval-episodes", "0", "--device", "cpu", "--max-episode-steps", "20"]
    run("training.agents.sb3", args, tmp_path, kill)
    run("training.agents.sb3", args, tmp_path)
    from stable_baselines3 import PPO

    model = PPO.load(tmp_path / "run" / "model.zip", device="cpu")
    assert model.num_timesteps >= 96
    meta = json.loads((tmp_path / "run" / "policy.json").read_text())
    assert meta["num_timesteps"] == model.num_timesteps
    weights = load_file(tmp_path / "run" / "policy.safetensors")
    for name, tensor in model.policy.state_dict().items():
        if name in weights:
            assert torch.equal(weights[name], tensor), name


def test_a_kill_lands_where_asked(tmp_path):
    """The driver kills at the asked write, and the file being written is left as the old one."""
    args = ["--game", "Pong", "--out", str(tmp_path / "data"), "--steps", "1200"]
    start = time.perf_counter()
    assert run("training.data.collect", args, tmp_path, ("before-rename", 2)) == KILLED
    assert time.perf_counter() - start < 120
    assert (tmp_path / "data" / "index.json.tmp").exists() and not (tmp_path / "data" / "index.json").exists()
