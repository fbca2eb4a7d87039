"""benchmarks/pong_lead.sh train: which runs it starts, and from where, with the training itself stood in for."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import ROOT

from training.runtime.run_folder import guard_run_settings

LEAD = ROOT / "benchmarks" / "leads" / "Pong.safetensors"

# stands in for the interpreter: records the training commands and skips the data collection, runs the rest
FAKE_PYTHON = f"""#!{sys.executable}
import json, os, sys
args = sys.argv[1:]
if args[:2] == ["-m", "training.world_model"]:
    with open(os.environ["RECORD"], "a") as record:
        record.write(json.dumps(args) + "\\n")
    sys.exit(0)
if args[:2] == ["-m", "training.data.collect"]:
    sys.exit(0)
os.execv(sys.executable, [sys.executable, *args])
"""


def started_runs(tmp_path: Path, runs: Path) -> dict[str, list[str]]:
    """The training commands ``pong_lead.sh train RUNS`` starts, by run folder name."""
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    record = tmp_path / "started.jsonl"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "pong_lead.sh"), "train", str(runs)],
                          env={**os.environ, "PYTHON": str(fake), "RECORD": str(record)},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = proc.stdout.count("started (pid")
    deadline = time.monotonic() + 60  # the runs go to the background
    while time.monotonic() < deadline and (not record.exists() or len(record.read_text().splitlines()) < expected):
        time.sleep(0.2)
    commands = [json.loads(line) for line in record.read_text().splitlines()] if record.exists() else []
    assert len(commands) == expected
    return {Path(args[args.index("--out") + 1]).name: args for args in commands}


def init_from(args: list[str]) -> str | None:
    return args[args.index("--init-from") + 1] if "--init-from" in args else None


@pytest.mark.skipif(not LEAD.exists(), reason="the committed Pong lead is what a new run starts from")
def test_a_new_lead_run_starts_from_the_committed_lead(tmp_path):
    runs = started_runs(tmp_path, tmp_path / "runs")
    assert Path(init_from(runs["denoiser"])).resolve() == LEAD.resolve()
    assert "rew-end" not in runs  # the lead holds a trained reward/termination model


def test_a_run_begun_elsewhere_resumes_from_where_it_began(tmp_path):
    # the lead may be exported while a run goes on: resuming must not ask the run to have begun from it
    runs = tmp_path / "runs"
    (runs / "denoiser").mkdir(parents=True)
    # recorded as the trainer records a denoiser-only run's settings (init_from left out at its default)
    guard_run_settings(runs / "denoiser", {"game": "Pong"}, phase="denoiser")
    assert init_from(started_runs(tmp_path, runs)["denoiser"]) is None

    origin = tmp_path / "origin.safetensors"
    origin.write_bytes(b"")
    (runs / "denoiser" / "config.json").unlink()
    guard_run_settings(runs / "denoiser", {"game": "Pong", "init_from": str(origin)}, phase="denoiser")
    (tmp_path / "started.jsonl").unlink()
    assert init_from(started_runs(tmp_path, runs)["denoiser"]) == str(origin)
