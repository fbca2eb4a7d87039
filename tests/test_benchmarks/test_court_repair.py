"""benchmarks/court_repair.py: a denoiser that copies a broken court keeps it broken; one that repairs climbs back."""

import json

import numpy as np
import pytest
from helpers import load_benchmark, make_tiny_checkpoint, real_pong_data

from training.data.dataset import EpisodeDataset
from training.data.objects import court_kept, court_scene

court_repair = load_benchmark("court_repair")
L, STEPS = 4, 3


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    root = real_pong_data(tmp_path_factory.mktemp("court_repair") / "data", episodes=2, steps=60)
    dataset = EpisodeDataset(root)
    frames, actions = court_repair.held_out_segments(dataset, dataset.split(0.5, seed=0)[1], samples=6,
                                                     length=L + STEPS)
    return root, frames, actions


def copy_last(context: np.ndarray, actions: np.ndarray) -> np.ndarray:
    return context[:, -1].copy()


def paint_court(context: np.ndarray, actions: np.ndarray) -> np.ndarray:
    walls, colour, _ = court_scene("Pong")
    frame = context[:, -1].copy()
    frame[:, walls] = colour.astype(np.uint8)
    return frame


@pytest.mark.parametrize("kind, share, level", [("none", 1.0, 1.0), ("ends", 1 - 24 / 64, 1 - 24 / 64),
                                               ("fade", 0.0, 0.5), ("gone", 0.0, 0.0)])
def test_a_copying_denoiser_keeps_the_court_as_broken_and_a_repairing_one_draws_it_back(pong, kind, share, level):
    _, frames, actions = pong
    kept, levels = court_repair.court_repair(copy_last, frames, actions, "Pong", L, STEPS, kind)
    assert kept == pytest.approx([share] * (STEPS + 1), abs=1e-6)  # the real court is all kept; a break is not
    assert levels == pytest.approx([level] * (STEPS + 1), abs=0.01)  # a half faded court reads 0.5
    kept, levels = court_repair.court_repair(paint_court, frames, actions, "Pong", L, STEPS, kind)
    assert kept[0] == pytest.approx(share, abs=1e-6) and kept[1:] == [1.0] * STEPS
    assert levels[1:] == pytest.approx([1.0] * STEPS, abs=1e-6)


def test_only_the_court_is_broken(pong):
    _, frames, _ = pong
    walls, _, _ = court_scene("Pong")
    for kind in court_repair.BREAKS:
        broken = court_repair.break_court(frames, "Pong", kind)
        assert np.array_equal(broken[..., ~walls, :], frames[..., ~walls, :]), kind
    assert court_kept("Pong", court_repair.break_court(frames[:, 0], "Pong", "gone")).max() == 0
    with pytest.raises(ValueError, match="unknown break"):
        court_repair.break_court(frames, "Pong", "shatter")


def test_the_command_prints_a_line_per_checkpoint(pong, tmp_path, capsys):
    root, _, _ = pong
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    court_repair.main(["--data", str(root), "--checkpoint", str(checkpoint), "--test-fraction", "0.5", "--samples",
                       "2", "--steps", "4"])
    line = json.loads(capsys.readouterr().out)
    assert line["checkpoint"] == str(checkpoint) and list(line)[1:] == list(court_repair.BREAKS)
    assert line["none"]["context"] == [1.0, 1.0] and line["gone"]["context"] == [0.0, 0.0]
    assert all(list(line[kind]) == ["context", "step_1", "step_4"] for kind in court_repair.BREAKS)
