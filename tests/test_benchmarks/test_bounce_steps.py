"""benchmarks/bounce_steps.py: a step-by-step table of real returns dreamt from the real frames, and its JSON."""

import json

import pytest
from helpers import load_benchmark, make_tiny_checkpoint, real_pong_data

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
    boxing = make_tiny_checkpoint(tmp_path / "Boxing.safetensors", game="Boxing")
    with pytest.raises(SystemExit):
        bounce.main(["--data", str(data), "--checkpoint", str(boxing)])
    assert "holds 'Pong' episodes, not 'Boxing'" in capsys.readouterr().err  # a clear error, no traceback
