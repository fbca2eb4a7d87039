"""benchmarks/quality_gates.py runs every gate end to end on a tiny model and writes gates.json."""

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import make_tiny_checkpoint

from training.collect import main as collect_main

ROOT = Path(__file__).parent.parent


def test_quality_gates_measure_fidelity_events_and_transfer(tmp_path):
    data = tmp_path / "data"
    collect_main(["--game", "Pong", "--out", str(data), "--steps", "1200", "--envs", "2", "--no-life-loss"])
    checkpoint = make_tiny_checkpoint(tmp_path / "wm.safetensors")
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "quality_gates.py"), "--checkpoint",
                           str(checkpoint), "--data", str(data), "--test-fraction", "0.5", "--out", str(tmp_path / "g"),
                           "--samples", "8", "--denoising-steps", "1", "2", "--ppo-steps", "64", "--ppo-kwargs",
                           '{"n_steps": 32, "batch_size": 32}', "--num-envs", "1",
                           "--episodes", "1"], cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    gates = json.loads((tmp_path / "g" / "gates.json").read_text())
    assert set(gates["fidelity"]) == {"1_denoising_steps", "2_denoising_steps"}
    for figures in gates["fidelity"].values():
        assert set(figures["psnr"]) == {"1", "5", "15"} and figures["passed"] is False  # an untrained model
    events = gates["events"]
    assert sum(map(sum, events["reward_confusion"])) == events["transitions"] > 0
    assert gates["transfer"]["episodes"] == 1 and gates["transfer"]["measure"] == "points won per game"
    assert proc.stdout.splitlines()[-1].startswith("| Pong | ")
