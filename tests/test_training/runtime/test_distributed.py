"""Data-parallel training through a real ``torchrun`` with gloo on the CPU (training.runtime.distributed).

Checked: 2 processes with batch b end with the parameters of 1 process with batch 2b; a run resumes
with another number of processes (no random stream is bound to a rank); a torchrun pipeline killed
with SIGKILL resumes, here as one process, and completes without duplicated data.
"""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import KILL_DRIVER, run_command_here
from safetensors.torch import load_file

from gym_diamond.checkpoint import read_metadata
from training.data.collect import main as collect_main
from training.data.dataset import EpisodeDataset
from training.runtime.distributed import Distributed, init_distributed

pytestmark = pytest.mark.slow  # subprocesses or real training: `pytest -m "not slow"` skips it

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(module: str, args: list[str], nproc: int, cwd: Path, kill_at: int | None = None) -> int:
    """``torchrun --standalone --nproc_per_node nproc -m module args``, one thread a process (one process: in this
    one, ``run_command_here``).

    ``kill_at=n``: the workers run under ``tests/kill_driver.py``, which SIGKILLs rank 0 (the rank that
    writes) just after its n-th file rename; torchrun then stops the other worker and fails.
    """
    if nproc == 1 and kill_at is None:
        run_command_here(module, args)
        return 0
    env = ENV if kill_at is None else {**ENV, "KILL_MODE": "after-rename", "KILL_AT": str(kill_at)}
    target = ["-m", module] if kill_at is None else [str(KILL_DRIVER), module]
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    proc = subprocess.run([sys.executable, *launcher, *target, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, timeout=600)
    if kill_at is None:
        assert proc.returncode == 0, f"{module} with {nproc} processes failed:\n{proc.stderr[-4000:]}"
    return proc.returncode


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "data"
    collect_main(["--game", "Breakout", "--out", str(root), "--steps", "400", "--num-envs", "2"])
    return root


def world_model(data: Path, out: Path, steps: int, batch: int, nproc: int) -> dict[str, torch.Tensor]:
    run("training.world_model", ["--game", "Breakout", "--data", str(data), "--out", str(out), "--steps", str(steps),
                                 "--model", "tiny", "--batch-size", str(batch), "--device", "cpu", "--save-every",
                                 "1", "--warmup-steps", "1"], nproc, data.parent)  # parameters move from update 2
    return load_file(str(out / "world_model.safetensors"))


@pytest.fixture(scope="module")
def untrained(data, tmp_path_factory) -> dict[str, torch.Tensor]:
    """The world model after one update, which has learning rate 0: where the updates below start from."""
    return world_model(data, tmp_path_factory.mktemp("zero") / "run", steps=1, batch=4, nproc=1)


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_processes_with_batch_b_equal_one_with_batch_2b(data, untrained, tmp_path):
    one = world_model(data, tmp_path / "one", steps=4, batch=4, nproc=1)
    two = world_model(data, tmp_path / "two", steps=4, batch=2, nproc=2)
    moved = max_difference(one, untrained)  # small: the learning rate warms up from 1e-6
    difference = max_difference(one, two)
    print(f"[ddp] max |2 x batch 2 - 1 x batch 4| after 4 updates: {difference:.3g} (the updates moved "
          f"parameters by up to {moved:.3g})")
    assert difference < 1e-3 * moved
    (row_one,), (row_two,) = (list(csv.DictReader((tmp_path / r / "losses.csv").open())) for r in ("one", "two"))
    for column in ("denoiser_loss", "denoiser_grad_norm", "reward_loss", "end_loss", "rew_end_grad_norm"):
        # losses and gradient norms are the global batch's: a gradient summed, not averaged, would show here
        assert float(row_two[column]) == pytest.approx(float(row_one[column]), rel=1e-5), column
    provenance = read_metadata(tmp_path / "two" / "world_model.safetensors")["provenance"]
    assert provenance["processes"] == 2 and provenance["batch_size"] == 4


def test_resumes_with_another_number_of_processes(data, untrained, tmp_path):
    straight = world_model(data, tmp_path / "straight", steps=4, batch=4, nproc=1)
    world_model(data, tmp_path / "switched", steps=2, batch=2, nproc=2)
    resumed = world_model(data, tmp_path / "switched", steps=4, batch=4, nproc=1)
    difference = max_difference(straight, resumed)
    print(f"[ddp] max |2 procs then 1 - 1 proc| after 4 updates: {difference:.3g}")
    assert difference < 1e-3 * max_difference(straight, untrained)


def test_pipeline_killed_under_torchrun_resumes_as_one_process(tmp_path):
    # killed just after the first training state (rename 9), its collection stored; kills at every other stage of
    # one process are test_sigkill's (an episode of the first collection, mid-write, before a rename)
    out = tmp_path / "pipe"
    args = ["--game", "Pong", "--preset", "micro", "--out", str(out), "--device", "cpu"]
    assert run("training.pipeline", args, 2, tmp_path, kill_at=9) != 0
    assert not (out / "report.json").exists()
    run("training.pipeline", args, 1, tmp_path)
    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] == 2 and report["world_model_updates"]["denoiser"] == 4
    dataset = EpisodeDataset(out / "data")
    assert len(dataset) == report["dataset_episodes"]
    frames = [dataset.episode(i).frames.tobytes() for i in range(len(dataset))]
    assert len(set(frames)) == len(frames), "an episode was stored twice"


def test_single_process_needs_no_process_group(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    distributed, device = init_distributed("cpu")
    assert distributed == Distributed() and not distributed.enabled and device == torch.device("cpu")
    assert distributed.mean([1.5, 2.0]) == [1.5, 2.0] and distributed.broadcast({"a": 1}) == {"a": 1}
    assert distributed.shard(3) == slice(0, 3)
    assert Distributed(rank=1, world_size=2).shard(3) == slice(3, 6)
