"""python -m training.gates runs every gate end to end on a tiny model and writes gates.json."""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import ROOT, make_tiny_checkpoint

from training.data.collect import main as collect_main

pytestmark = pytest.mark.slow  # subprocesses or real training: `pytest -m "not slow"` skips it



def test_quality_gates_measure_fidelity_events_and_transfer(tmp_path, capsys):
    from training.gates import main as gates_main

    data = tmp_path / "data"
    collect_main(["--game", "Pong", "--out", str(data), "--steps", "1200", "--num-envs", "2", "--no-life-loss"])
    checkpoint = make_tiny_checkpoint(tmp_path / "wm.safetensors")
    capsys.readouterr()
    gates_main(["--checkpoint", str(checkpoint), "--data", str(data), "--test-fraction", "0.5", "--out",
                str(tmp_path / "g"), "--samples", "4", "--denoising-steps", "1", "2", "--ppo-steps", "16",
                "--algo-kwargs", '{"n_steps": 16, "batch_size": 16}', "--num-envs", "1", "--frame-stack", "2",
                "--episodes", "1", "--max-steps", "300", "--dream-event-steps", "20", "--closed-loop-steps", "24",
                "--closed-loop-envs", "2"])
    stdout = capsys.readouterr().out
    gates = json.loads((tmp_path / "g" / "gates.json").read_text())
    assert set(gates["fidelity"]) == {"1_denoising_steps", "2_denoising_steps"}
    for figures in gates["fidelity"].values():
        assert set(figures["psnr"]) == {"1", "5", "15"} and figures["passed"] is False  # an untrained model
        assert not figures["objects_gate"]["passed"] and figures["objects_gate"]["failed"]
        objects = figures["objects"]  # ball and paddle agreement
        assert set(objects) == {"1", "5", "15"}
        assert objects["1"]["paddle_real"] > 0 and objects["1"]["paddle_shown_repeat_last"] > 0.9
        assert {"ball_real", "ball_shown_model", "ball_within_2px_model", "ball_within_2px_repeat_last",
                "paddle_within_2px_model"} <= set(objects["15"])
    events = gates["events"]
    assert sum(map(sum, events["reward_confusion"])) == events["transitions"] > 0
    dream_events = gates["dream_events"]  # judged on the dream's own next frames, the first sampler's
    assert dream_events["denoising_steps"] == 1 and sum(map(sum, dream_events["reward_confusion"])) >= 20
    assert dream_events["episodes"] + dream_events["episode_ends"] == gates["held_out"]["episodes"]
    assert set(gates["closed_loop"]["policies"]) >= {"random", "follower"}
    assert gates["passed"] is False and any(why.startswith("1_denoising_steps objects_gate") for why in gates["failed"])
    assert gates["transfer"]["episodes"] == 1 and gates["transfer"]["measure"] == "points won per game"
    assert gates["transfer"]["frame_stack"] == 2  # the agent trained on 2 stacked frames played the real game so
    assert gates["transfer"]["max_steps"] == 300
    assert stdout.splitlines()[-1].startswith("| Pong | ")
    assert gates["held_out"]["how"] == "split, test_fraction 0.5" and gates["held_out"]["episodes"] >= 1

    apart = tmp_path / "apart"  # a dataset collected apart: every episode of it is judged
    collect_main(["--game", "Pong", "--out", str(apart), "--steps", "300", "--num-envs", "2", "--seed", "5"])
    gates_main(["--checkpoint", str(checkpoint), "--test-data", str(apart), "--out", str(tmp_path / "g2"),
                "--samples", "4", "--ppo-steps", "0", "--closed-loop-steps", "0", "--dream-event-steps", "0"])
    gates = json.loads((tmp_path / "g2" / "gates.json").read_text())
    assert gates["held_out"]["how"] == "collected apart" and gates["held_out"]["steps"] == 300
    assert gates["held_out"]["collection"][0]["seed"] == 5 and gates["events"]["transitions"] == 300
    # read over whole episodes as a dream reads them: all but each episode's burn-in (3 transitions)
    whole = gates["whole_episode_events"]
    assert whole["transitions"] == 300 - 3 * gates["held_out"]["episodes"] and whole["rew_end_window"] == 19
    assert "transfer" not in gates and "closed_loop" not in gates and "dream_events" not in gates
    with pytest.raises(SystemExit) as both:
        gates_main(["--checkpoint", str(checkpoint), "--test-data", str(apart), "--data", str(data), "--out",
                    str(tmp_path)])
    assert both.value.code != 0 and "give --data with --test-fraction" in capsys.readouterr().err


def test_pooled_psnr_counts_an_exact_repeat_as_zero_error_not_100_db():
    import torch

    from training.fidelity.open_loop import pooled_psnr, psnr

    real = torch.zeros(2, 3, 4, 4)
    guess = real.clone()
    guess[1] += 0.02  # mse 4e-4 on the second sample: 40 dB
    assert psnr(guess, real).tolist() == pytest.approx([106.02, 40.0], abs=1e-2)  # the clamp: 106 dB; mean 73
    assert pooled_psnr(guess, real) == pytest.approx(10 * math.log10(4 / 2e-4), abs=1e-3)  # 43 dB


def test_model_frame_psnr_and_uint8_frame_psnr_agree_on_the_same_frames():
    """One formula: the fidelity benchmark's PSNR (frames in [-1, 1]) is the PSNR of the uint8 frames they show."""
    import torch

    from gym_diamond import to_model_frames
    from gym_diamond.compare import psnr as uint8_psnr
    from training.fidelity.open_loop import psnr

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    dream = np.clip(real.astype(int) + rng.integers(-9, 10, real.shape), 0, 255).astype(np.uint8)
    as_model = [to_model_frames(torch.from_numpy(x)) for x in (real, dream)]
    assert psnr(as_model[1], as_model[0]).tolist() == pytest.approx(uint8_psnr(real, dream).tolist(), abs=1e-3)


def test_ppo_real_trains_in_the_real_game_and_compares_with_random(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "training.ppo_real", "--game", "Pong",
                           "--steps", "64", "--out", str(tmp_path / "ppo"), "--algo-kwargs",
                           '{"n_steps": 32, "batch_size": 32, "n_epochs": 1}', "--num-envs", "2", "--frame-stack", "2",
                           "--episodes", "1", "--max-steps", "100"], cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1])
    assert result["trained_in"] == "real game" and result["ppo_steps"] == 64
    assert len(result["ppo_returns"]) == len(result["random_returns"]) == 1
    assert (tmp_path / "ppo" / "model.zip").exists()
    from training.agents.evaluate import load_agent

    agent = load_agent(f"sb3:{tmp_path / 'ppo'}", "Pong", 1)  # the evaluation table reads it
    assert agent.frame_stack == 2 and agent.act(np.zeros((1, 64, 64, 3), np.uint8)).shape == (1,)
