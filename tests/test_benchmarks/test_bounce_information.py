"""benchmarks/bounce_information.py: the moments at the paddle as features and outcomes, and a classifier that finds
an outcome the features decide and none where they decide nothing."""

import numpy as np
import pytest
from helpers import load_benchmark, pong_frame

from training.data.dataset import Episode, EpisodeDataset

bounce_information = load_benchmark("bounce_information")
bounce_table, held_out_accuracy = bounce_information.bounce_table, bounce_information.held_out_accuracy


def _episode(xs: list[float | None], action: int) -> Episode:
    T = len(xs) - 1
    return Episode(np.stack([pong_frame(x) for x in xs]), np.full(T, action, np.int64), np.zeros(T, np.float32),
                   np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool))


def test_the_moments_at_the_paddle_become_rows_of_positions_and_outcomes(tmp_path):
    dataset = EpisodeDataset(tmp_path / "data", game="Pong")
    dataset.append(_episode([32, 36, 40, 44, 48, 52, 54, 50, 46, 42, 38, 34, 30], action=1))  # returned at 52, 54
    dataset.append(_episode([32, 36, 40, 44, 48, 53, 57, 60, None, None, None, None], action=2))  # let through
    features, outcomes = bounce_table(dataset, np.array([0, 1]), frames=4, num_actions=3)
    assert outcomes.tolist() == [1, 1, 0]  # 52 and 54 lie 2-6 px before the paddle's column, so does 53
    # the ball relative to the paddle (column 56, rows 38-42; the ball on row 30) over the 4 frames up to 52
    relative = features[0, :8].reshape(4, 2)
    assert relative[:, 0] == pytest.approx([40 - 56, 44 - 56, 48 - 56, 52 - 56], abs=0.6)
    assert relative[:, 1] == pytest.approx([30 - 40] * 4, abs=0.6)
    horizon_actions = features[:, -3:]  # one-hot of the last action taken before the outcome is seen
    assert horizon_actions[:2].argmax(1).tolist() == [1, 1] and horizon_actions[2:].argmax(1).tolist() == [2]


def test_the_classifier_finds_an_outcome_the_features_decide_and_not_one_they_do_not():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 6)).astype(np.float32)
    decided = (x[:, 0] + 0.5 * x[:, 1] > 0.3).astype(np.float32)
    train, test = slice(0, 400), slice(400, 600)
    figures = held_out_accuracy((x[train], decided[train]), (x[test], decided[test]), hidden=32, steps=300)
    assert figures["accuracy"] > 0.88 and figures["accuracy"] > figures["commoner_outcome"] + 0.2
    assert figures["returns_called"] > 0.8 and figures["misses_called"] > 0.8
    chance = (rng.random(600) < 0.4).astype(np.float32)
    figures = held_out_accuracy((x[train], chance[train]), (x[test], chance[test]), hidden=32, steps=300)
    assert figures["accuracy"] < 0.7
    with pytest.raises(ValueError, match="need returns and misses"):
        held_out_accuracy((x[train], np.zeros(400, np.float32)), (x[test], decided[test]))
