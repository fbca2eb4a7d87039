"""benchmarks/bounce_steps.py: a step-by-step table of real returns dreamt from the real frames, its JSON, and
pictures of the balls the denoiser loses."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
from helpers import load_benchmark, make_tiny_checkpoint, pong_frame, real_pong_data

from training.fidelity.measures import ObjectScore

bounce = load_benchmark("bounce_steps")


def test_the_command_prints_a_row_per_step_of_the_return_horizon(tmp_path, capsys, one_thread):
    data = real_pong_data(tmp_path / "pong", episodes=2, steps=300)
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    bounce.main(["--data", str(data), "--checkpoint", str(checkpoint), "--samples", "3", "--sigmas", "5", "0.5",
                 "--denoising-steps", "1"])
    *table, last = capsys.readouterr().out.strip().splitlines()
    line = json.loads(last)
    assert line["denoising_steps"] == 1 and "held_out_episodes" in line
    assert [row["step"] for row in line["steps"]] == [1, 2, 3, 4] and len(table) == 5  # a heading, then Pong's 4
    assert all(set(row["hinted_within"]) == {"5.0", "0.5"} for row in line["steps"])
    out = tmp_path / "lost.png"
    bounce.main(["--data", str(data), "--checkpoint", str(checkpoint), "--samples", "3", "--sigmas", "0.5",
                 "--denoising-steps", "1", "--pictures", str(out), "--picture-step", "2", "--scale", "1"])
    printed = capsys.readouterr().out.strip().splitlines()[-1]
    assert printed.startswith(f"wrote {out} (step 2, sigma 0.5") or printed.endswith("no picture")
    assert out.exists() == printed.startswith("wrote")
    with pytest.raises(SystemExit):
        bounce.main(["--data", str(data), "--checkpoint", str(checkpoint), "--windows", "0"])
    assert "--windows and --scale must be >= 1" in capsys.readouterr().err
    boxing = make_tiny_checkpoint(tmp_path / "Boxing.safetensors", game="Boxing")
    with pytest.raises(SystemExit):
        bounce.main(["--data", str(data), "--checkpoint", str(boxing)])
    assert "holds 'Pong' episodes, not 'Boxing'" in capsys.readouterr().err  # a clear error, no traceback


def test_the_pictures_show_the_balls_the_denoiser_loses_at_its_weakest_step():
    report = SimpleNamespace(steps=[SimpleNamespace(step=h, hinted={0.5: ObjectScore(4, 4, kept)})
                                    for h, kept in ((1, 4), (2, 1), (3, 1), (4, 3))])
    assert bounce.weakest_step(report, 0.5) == 2  # the first of the two weakest
    real = np.stack([np.stack([pong_frame(x)] * 5) for x in (40, 50, 30)])
    estimates = np.stack([pong_frame(40), pong_frame(None), pong_frame(35)])  # kept, erased, 5 px away
    rows = bounce.lost_ball_rows("Pong", real, estimates, windows=8)
    crop = bounce.CROP + 2 * bounce.GAP
    assert rows.shape == (2 * crop, 7 * crop, 3)  # the two lost, 5 frames, the estimate and the difference
    assert bounce.lost_ball_rows("Pong", real, estimates, windows=1).shape[0] == crop
    assert bounce.lost_ball_rows("Pong", real[:1], estimates[:1], windows=8) is None
