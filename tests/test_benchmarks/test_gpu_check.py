"""benchmarks/gpu_check.sh: the script a GPU session runs in one call passes a CPU dry run."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT

pytestmark = pytest.mark.slow  # subprocesses or real training: `pytest -m "not slow"` skips it



def test_gpu_check_dry_run_writes_every_figure(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path), "--dry-run"],
                          env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    steps = [json.loads(line) for line in (tmp_path / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == ["cuda_tests", "throughput", "env", "training"]
    assert all(s["rc"] == 0 for s in steps)
    assert "test_torch_output_step_on_cuda_never_synchronises" in (tmp_path / "cuda_tests.txt").read_text()
    for name in ("throughput", "env", "training"):
        lines = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
        assert lines, name
    assert "torch" in json.loads((tmp_path / "machine.json").read_text())
