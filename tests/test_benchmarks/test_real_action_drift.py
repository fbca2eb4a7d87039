"""benchmarks/real_action_drift.py: a dream that redraws the episode never parts from it; one that stops does."""

import json

import numpy as np
import pytest
from helpers import load_benchmark, make_tiny_checkpoint, real_pong_data

from training.data.dataset import EpisodeDataset
from training.data.objects import find_opponent_paddle

drift_benchmark = load_benchmark("real_action_drift")
L, STEPS = 4, 40


@pytest.fixture(scope="module")
def pong(tmp_path_factory):
    root = real_pong_data(tmp_path_factory.mktemp("real_action_drift") / "data", episodes=2, steps=80)
    dataset = EpisodeDataset(root)
    frames, actions = drift_benchmark.court_repair.held_out_segments(dataset, np.arange(len(dataset)), samples=6,
                                                                     length=L + STEPS)
    return root, frames, actions


def test_a_dream_that_redraws_the_episode_never_parts_and_one_that_freezes_does(pong):
    _, frames, actions = pong
    step = iter(range(STEPS))

    def redraw(context, actions):  # the real frame at each age
        return frames[:, L + next(step)].copy()

    drift = drift_benchmark.real_action_drift(redraw, frames, actions, L, STEPS, "Pong")
    assert drift["parted"].shape == (6, STEPS) and drift["parted"].max() == 0
    assert np.nanmax(drift["opponent_rows"]) == 0
    assert (drift["opponent_pieces"] > 1).mean() <= 0.02  # the game draws it whole (but when it jumps after a point)
    frozen = drift_benchmark.real_action_drift(lambda context, actions: context[:, -1].copy(), frames, actions, L,
                                               STEPS, "Pong")
    assert frozen["parted"][:, -1].mean() > 4  # the ball (2 x 4 pixels) and the paddles moved on
    figures = drift_benchmark.by_age(frozen)
    assert list(figures) == [1, 2, 4, 8, 16, 32]  # the ages reached
    assert figures[32]["parted_median"] >= figures[1]["parted_median"]

    def two_paddles(context, actions):  # the last frame with its opponent's paddle drawn again 20 rows away
        frame = context[:, -1].copy()
        centres = find_opponent_paddle(frame).centre_y
        for n, centre in enumerate(centres):
            if not np.isnan(centre):
                top = int(round(centre)) - 2
                copy_top = top + 20 if top < 30 else top - 20
                frame[n, copy_top:copy_top + 5, 5:10] = frame[n, top:top + 5, 5:10]
        return frame

    doubled = drift_benchmark.by_age(drift_benchmark.real_action_drift(two_paddles, frames, actions, L, 4, "Pong"))
    assert figures[4]["opponent_in_pieces"] <= 0.2 and doubled[4]["opponent_in_pieces"] >= 0.5


def test_parted_pixels_count_a_pixel_once_a_channel_is_32_levels_off():
    real = np.zeros((1, 4, 4, 3), np.uint8)
    dreamed = real.copy()
    dreamed[0, 0, 0, 2] = 32  # parted
    dreamed[0, 1, 1] = 31  # every channel just short: not parted
    dreamed[0, 2, 2, :2] = 200  # two channels of one pixel: one pixel
    assert drift_benchmark.parted_pixels(dreamed, real).tolist() == [2]


def test_the_command_prints_a_line_per_checkpoint(pong, tmp_path, capsys):
    root, _, _ = pong
    checkpoint = make_tiny_checkpoint(tmp_path / "Pong.safetensors")
    drift_benchmark.main(["--data", str(root), "--checkpoint", str(checkpoint), "--test-fraction", "0.5",
                          "--samples", "2", "--steps", "4"])
    line = json.loads(capsys.readouterr().out)
    assert line["checkpoint"] == str(checkpoint) and list(line["by_age"]) == ["1", "2", "4"]
    assert set(line["by_age"]["4"]) == {"parted_median", "parted_p90", "opponent_median", "opponent_over_4",
                                        "opponent_in_pieces"}
