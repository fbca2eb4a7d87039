"""Every example runs end to end, as a user would run it (its command line, as ``__main__``), on a tiny world model
and tiny budgets."""

import contextlib
import io
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, make_tiny_checkpoint

pytestmark = pytest.mark.slow  # real training, the examples end to end: `pytest -m "not slow"` skips it

EXAMPLES = ROOT / "examples"
iio = pytest.importorskip("imageio.v3")
pytest.importorskip("matplotlib")


def run_example(name: str, *args, cwd: Path, own_process: bool = False) -> str:
    """``python examples/NAME ARGS`` in ``cwd``; its stdout. In this process (as ``__main__``, with its argv and
    working directory: the seconds a new interpreter takes to import torch saved) unless ``own_process``, which an
    example that starts processes of its own needs."""
    if own_process:
        result = subprocess.run([sys.executable, str(EXAMPLES / name), *map(str, args)], cwd=cwd,
                                capture_output=True, text=True, timeout=900)  # minutes on a loaded 2-core machine
        assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"
        return result.stdout
    stdout, argv, where = io.StringIO(), sys.argv, os.getcwd()
    sys.argv = [str(EXAMPLES / name), *map(str, args)]
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout):
            runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    except SystemExit as exit_:
        assert exit_.code in (0, None), f"{name} exited with {exit_.code}:\n{stdout.getvalue()}"
    finally:
        sys.argv = argv
        os.chdir(where)
    return stdout.getvalue()


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory):
    """A pipeline run folder from examples/full_pipeline.py with the seconds-long micro preset."""
    cwd = tmp_path_factory.mktemp("pipeline")
    out = run_example("full_pipeline.py", "--game", "Pong", "--preset", "micro", "--out", "run", cwd=cwd)
    assert re.search(r"real-game score -?\d+\.\d \+- \d+\.\d", out)
    assert "dream of Pong: observation (64, 64, 3) uint8" in out
    return cwd / "run"


@pytest.mark.parametrize("game", ["Pong", "MiniGrid-Empty-6x6-v0"])  # any checkpoint, as DiamondDream/Dream-v0
def test_quickstart_prints_returns_and_writes_a_gif(game, pong_checkpoint, tmp_path):
    checkpoint = pong_checkpoint if game == "Pong" else make_tiny_checkpoint(tmp_path / "maze.safetensors", game=game)
    out = run_example("quickstart.py", "--checkpoint", checkpoint, "--episodes", "2", "--max-steps", "4",
                      "--gif", "dream.gif", cwd=tmp_path)
    assert len(re.findall(r"episode \d: return [+-]\d+ in [1-4] steps", out)) == 2
    frames = iio.imread(tmp_path / "dream.gif")
    steps = int(re.search(r"episode 0: return [+-]\d+ in (\d) steps", out).group(1))
    assert frames.shape[0] == steps and frames.shape[1:3] == (256, 256)


def test_sb3_ppo_in_dream_reports_ppo_and_random(pong_checkpoint, tmp_path):
    out = run_example("sb3_ppo_in_dream.py", "--checkpoint", pong_checkpoint, "--steps", "32", "--num-envs", "2",
                      "--n-steps", "16", "--episodes", "1", "--eval-max-steps", "20", cwd=tmp_path)
    assert re.search(r"PPO \(trained in the dream\): real Pong return -?\d+\.\d", out)
    assert re.search(r"random: real Pong return -?\d+\.\d .*human-normalised", out)


def test_vector_env_torch_times_the_batched_dream(pong_checkpoint, tmp_path):
    out = run_example("vector_env_torch.py", "--checkpoint", pong_checkpoint, "--num-envs", "4", "--steps", "3",
                      "--device", "cpu", cwd=tmp_path)
    assert re.search(r"[\d.]+ imagined env-steps/s on cpu \(4 envs x 3 steps", out)


def test_rollout_per_device_runs_one_worker_per_device(pong_checkpoint, tmp_path):
    out = run_example("rollout_per_device.py", "--checkpoint", pong_checkpoint, "--num-envs", "3", "--steps", "4",
                      "--cpu-workers", "2", cwd=tmp_path, own_process=True)
    assert re.search(r"worker 0 on cpu: 12 imagined steps", out) and re.search(r"worker 1 on cpu: 12 imagined", out)
    assert re.search(r"2 workers: [\d.]+ imagined env-steps/s together", out)


def test_dream_vs_real_from_a_checkpoint_and_from_a_run(pong_checkpoint, micro_run, tmp_path):
    out = run_example("dream_vs_real.py", "--checkpoint", pong_checkpoint, "--steps", "5", "--out", "side.gif",
                      cwd=tmp_path)
    frames = iio.imread(tmp_path / "side.gif")
    assert re.search(r"(\d+) frames, PSNR [\d.]+ dB at step 1", out)
    assert 1 <= frames.shape[0] <= 5 and frames.shape[2] == 256 * 2 + 8  # real | gap | dream, plot below
    assert frames.shape[1] > 256  # the PSNR curve under the pictures
    out = run_example("dream_vs_real.py", str(micro_run), "--steps", "3", cwd=tmp_path)
    assert (micro_run / "dream_vs_real.gif").exists() and "side-by-side GIF" in out
    out = run_example("dream_vs_real.py", "--checkpoint", pong_checkpoint, "--steps", "3", "--follow", "0",
                      "--out", "follow.gif", cwd=tmp_path)
    assert "played by BallFollower" in out and (tmp_path / "follow.gif").exists()


def test_minigrid_dream_records_trains_and_opens_a_dream_of_another_environment(tmp_path):
    pytest.importorskip("minigrid")
    out = run_example("minigrid_dream.py", "--steps", "120", "--updates", "1", "--model", "tiny", "--out", "run",
                      "--dream-steps", "3", cwd=tmp_path)
    assert re.search(r"dream of MiniGrid-Empty-5x5-v0: observation \(64, 64, 3\) uint8, actions \['left', 'right', "
                     r"'forward', 'pickup', 'drop', 'toggle', 'done'\], reward [+-]\d+ over 3 random steps", out)
    assert (tmp_path / "run" / "data" / "index.json").is_file()


def test_agent_in_dream_runs_the_maze_end_to_end_and_judges_against_random(tmp_path):
    pytest.importorskip("minigrid")
    out = run_example("agent_in_dream.py", "--quick", "--env-id", "minigrid:MiniGrid-Empty-5x5-v0", "--agent", "ppo",
                      cwd=tmp_path)
    assert re.search(r"MiniGrid-Empty-5x5-v0: \d+ real steps, \d+ imagined steps for the agent \(PPO\)", out)
    assert re.search(r"random, the same episodes: mean return \d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", out)
    assert (tmp_path / "runs" / "agent-in-dream-micro-ppo" / "report.json").is_file()
