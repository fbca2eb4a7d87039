"""Event confusion of the reward/termination model on real transitions (training.fidelity)."""

import numpy as np
import pytest
import torch

from gym_diamond.nn.rew_end import RewEndOutput
from training.dataset import Episode, EpisodeDataset
from training.fidelity import EventReport, event_confusion


class _Oracle(torch.nn.Module):
    """Reads the reward sign and the termination that the test wrote into pixel (0, 0) of the next frame."""

    def __init__(self, blind: bool = False) -> None:
        super().__init__()
        self.blind = blind

    def forward(self, frames, actions, next_frames, state=None):
        code = ((next_frames[:, :, 0, 0, 0] + 1) * 127.5).round().long()  # 0..255, written as 10 * class
        reward_class, end = (code // 10) % 3, code // 30
        if self.blind:
            reward_class, end = torch.ones_like(reward_class), torch.zeros_like(end)
        return RewEndOutput(torch.nn.functional.one_hot(reward_class, 3).float(),
                            torch.nn.functional.one_hot(end, 2).float(), None)


class _Model:
    def __init__(self, blind: bool = False) -> None:
        self.device = torch.device("cpu")
        self.rew_end = _Oracle(blind)


@pytest.fixture
def dataset(tmp_path):
    data = EpisodeDataset(tmp_path / "d", game="Pong")
    rng = np.random.default_rng(0)
    for length in (45, 19, 7):
        rewards = rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], length).astype(np.float32)
        terminated = np.zeros(length, bool)
        terminated[-1] = True
        frames = np.zeros((length + 1, 64, 64, 3), np.uint8)
        frames[1:, 0, 0, 0] = 10 * (np.sign(rewards).astype(int) + 1) + 30 * terminated
        z = np.zeros(length, bool)
        data.append(Episode(frames, rng.integers(0, 6, length), rewards, terminated, z, z.copy()))
    return data


def test_an_oracle_is_perfect_and_every_transition_counts_once(dataset):
    report = event_confusion(_Model(), dataset, [0, 1, 2], sequence_length=19, batch_size=2)
    true_signs = np.concatenate([np.sign(dataset.episode(i).rewards) for i in range(3)]).astype(int) + 1
    assert report.reward.sum() == dataset.num_steps == 71
    assert (report.reward == np.diag(np.bincount(true_signs, minlength=3))).all()
    assert (report.termination == np.diag([68, 3])).all()
    summary = report.to_dict()
    assert summary["reward_recall"] == summary["reward_precision"] == 1.0
    assert summary["termination_recall"] == summary["termination_precision"] == 1.0
    assert summary["reward_events"] == int((true_signs != 1).sum()) > 0


def test_a_model_that_never_predicts_an_event_has_no_recall(dataset):
    report = event_confusion(_Model(blind=True), dataset, [1], sequence_length=5)
    assert report.reward.sum() == 19 and report.reward[:, 1].sum() == 19
    assert report.reward_recall() == 0.0 and report.reward_precision() is None
    assert report.termination_recall() == 0.0 and report.termination_precision() is None
    assert EventReport(np.zeros((3, 3), int), np.zeros((2, 2), int)).reward_recall() is None
