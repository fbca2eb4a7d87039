"""benchmarks/gpu_train.sh: the script a GPU session runs to train a game's dream passes a CPU dry run."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

from gym_diamond import load_checkpoint

pytestmark = pytest.mark.slow  # a subprocess that collects, trains and ships: `pytest -m "not slow"` skips it


def test_gpu_train_dry_run_brings_back_a_dream_and_its_curves(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train.sh"), "Pong", str(out), "--dry-run"],
                          env={**os.environ, "PYTHON": sys.executable, "WORK": str(tmp_path / "work"),
                               "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == ["collect", "collect_apart", "world_model", "ship"]
    assert all(s["rc"] == 0 for s in steps)
    dream = load_checkpoint(out / "Pong.safetensors")
    assert dream.provenance["recipe"] == "cpu" and dream.provenance["weights"] == "float16"
    assert dream.provenance["denoiser_steps"] == 4
    assert dream.world_model.config.denoiser.context_length == 16  # Pong's serve needs more than 4 frames
    rows = (out / "fidelity.csv").read_text().splitlines()
    assert rows[0].startswith("update,") and [r.split(",")[0] for r in rows[1:]] == ["2", "4"]
    assert all(f.stat().st_size < 16 * 2**20 for f in out.iterdir())  # what a device call brings back
    assert not (out / "data").exists()  # the data stays in WORK


def test_gpu_train_refuses_an_unknown_option(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_train.sh"), "Pong", str(tmp_path), "--fast"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "unknown option --fast" in proc.stderr
