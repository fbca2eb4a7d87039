"""Event confusion of the reward/termination model on real transitions, and ball and paddle agreement of
predicted frames with real ones (training.fidelity.measures)."""

import json

import numpy as np
import pytest
import torch
from helpers import PixelCodeOracle

from gym_diamond import load_checkpoint
from training.data.collect import main as collect_main
from training.data.dataset import Episode, EpisodeDataset
from training.fidelity.measures import EventReport, event_confusion, object_agreement


class _Model:
    def __init__(self, blind: bool = False) -> None:
        self.device = torch.device("cpu")
        self.rew_end = PixelCodeOracle(blind)


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


def test_frame_noise_undoes_a_model_that_reads_its_frames_to_the_pixel(dataset):
    clean = event_confusion(_Model(), dataset, [0, 1, 2], frame_noise=0.0)
    assert (clean.reward == event_confusion(_Model(), dataset, [0, 1, 2]).reward).all()
    noisy = event_confusion(_Model(), dataset, [0, 1, 2], frame_noise=0.03, seed=1)
    assert noisy.reward.sum() == clean.reward.sum() == 71  # the same transitions, judged on perturbed frames
    assert np.trace(noisy.reward) < 0.8 * np.trace(clean.reward)  # the pixel code, ~4 levels off, is misread
    again = event_confusion(_Model(), dataset, [0, 1, 2], frame_noise=0.03, seed=1)
    other = event_confusion(_Model(), dataset, [0, 1, 2], frame_noise=0.03, seed=2)
    assert (again.reward == noisy.reward).all() and (other.reward != noisy.reward).any()
    with pytest.raises(ValueError, match="frame_noise must be >= 0"):
        event_confusion(_Model(), dataset, [0], frame_noise=-0.1)


# --- ball and paddle agreement of predicted frames (training.fidelity.measures.object_agreement) ---

COURT = (144, 72, 17)


def _pong(ball: tuple[int, int] | None, paddle_y: int) -> np.ndarray:
    """A Pong frame in the game's colours: the ball (x, y) one white pixel, the player's paddle at column 56."""
    frame = np.empty((64, 64, 3), np.uint8)
    frame[:] = COURT
    frame[7:10] = frame[60:] = 236  # the bars, with their blended edges
    frame[10], frame[59] = (177, 131, 96), (225, 216, 209)
    frame[paddle_y - 2:paddle_y + 3, 56] = (92, 186, 92)
    if ball is not None:
        frame[ball[1], ball[0]] = 236
    return frame


def _rally(n: int = 3, H: int = 15, L: int = 4, shift: int = 0, ball: bool = True) -> tuple[np.ndarray, ...]:
    """Context (n, L), real and predicted (n, H) frames of a ball flying right 1 px a step; the prediction's
    ball ``shift`` px further right (or absent). The last context frame shows the ball where step 1 has it."""
    context = np.stack([[_pong((20 + 1, 20 + 5 * i) if t == L - 1 else None, 30) for t in range(L)]
                        for i in range(n)])
    real = np.stack([[_pong((20 + h, 20 + 5 * i), 30) for h in range(1, H + 1)] for i in range(n)])
    predicted = np.stack([[_pong((20 + h + shift, 20 + 5 * i) if ball else None, 30) for h in range(1, H + 1)]
                          for i in range(n)])
    return context, real, predicted


def test_a_prediction_equal_to_the_real_frames_agrees_fully():
    context, real, _ = _rally()
    report = object_agreement("Pong", context, real, real.copy())
    assert set(report.scores) == {1, 5, 15}
    for h in (1, 5, 15):
        line = report.line(h)
        assert line["ball_real"] == line["paddle_real"] == 3
        assert line["ball_shown_model"] == line["ball_within_2px_model"] == 1.0
        assert line["paddle_shown_model"] == line["paddle_within_2px_model"] == 1.0
    summary = report.to_dict()
    assert summary["game"] == "Pong" and summary["tolerance_px"] == 2.0
    assert json.loads(json.dumps(summary))["horizons"]["5"]["ball_within_2px_model"] == 1.0


def test_a_prediction_without_the_ball_shows_no_ball_but_the_paddle():
    context, real, predicted = _rally(ball=False)
    line = object_agreement("Pong", context, real, predicted, horizons=[1, 15]).line(15)
    assert line["ball_real"] == 3 and line["ball_shown_model"] == line["ball_within_2px_model"] == 0.0
    assert line["paddle_shown_model"] == line["paddle_within_2px_model"] == 1.0


@pytest.mark.parametrize(("shift", "within"), [(1, 1.0), (-2, 1.0), (3, 0.0), (5, 0.0)])
def test_a_ball_shifted_counts_within_2_px_or_not(shift, within):
    context, real, predicted = _rally(shift=shift)
    line = object_agreement("Pong", context, real, predicted, horizons=[5]).line(5)
    assert line["ball_shown_model"] == 1.0 and line["ball_within_2px_model"] == within


def test_repeat_last_predicts_the_last_context_frame():
    context, real, predicted = _rally()
    report = object_agreement("Pong", context, real, predicted)
    assert report.line(1)["ball_within_2px_repeat_last"] == 1.0  # step 1's ball is where the context left it
    assert report.line(5)["ball_shown_repeat_last"] == 1.0 and report.line(5)["ball_within_2px_repeat_last"] == 0.0
    assert report.line(15)["paddle_within_2px_repeat_last"] == 1.0  # the paddle stayed put
    context[:, -1] = context[:, 0]  # no ball in the last context frame, whatever came before
    context[:, 0] = real[:, 0]
    line = object_agreement("Pong", context, real, predicted, horizons=[1]).line(1)
    assert line["ball_shown_repeat_last"] == 0.0 and line["ball_shown_model"] == 1.0


def test_only_real_frames_that_show_the_object_count():
    context, real, predicted = _rally()
    real[0, 4] = _pong(None, 30)  # no ball at step 5 of the first sample: nothing to agree with
    valid = np.ones(real.shape[:2], bool)
    valid[1, 4:] = False  # the second sample's episode ended after 4 steps
    report = object_agreement("Pong", context, real, predicted, horizons=[1, 5], valid=valid)
    assert report.line(1)["ball_real"] == 3 and report.line(5)["ball_real"] == 1
    assert report.line(5)["paddle_real"] == 2
    ends = np.zeros(real.shape[:2], bool)
    assert object_agreement("Pong", context, real, predicted, horizons=[5], valid=ends).line(5) == {
        "ball_real": 0, "ball_shown_model": None, "ball_within_2px_model": None, "ball_shown_repeat_last": None,
        "ball_within_2px_repeat_last": None, "paddle_real": 0, "paddle_shown_model": None,
        "paddle_within_2px_model": None, "paddle_shown_repeat_last": None, "paddle_within_2px_repeat_last": None}


def test_object_agreement_refuses_what_it_cannot_judge():
    context, real, predicted = _rally(H=5)
    with pytest.raises(ValueError, match=r"horizons must lie in 1\.\.5 .*got \[1, 5, 15\]"):
        object_agreement("Pong", context, real, predicted)
    with pytest.raises(ValueError, match="supported games are Boxing, Breakout, Pong"):
        object_agreement("MsPacman", context, real, predicted, horizons=[1])
    with pytest.raises(ValueError, match="must match real"):
        object_agreement("Pong", context, real, predicted[:, :4], horizons=[1])
    with pytest.raises(ValueError, match="predicted must be uint8"):
        object_agreement("Pong", context, real, predicted.astype(np.float32), horizons=[1])
    with pytest.raises(ValueError, match=r"valid must have shape \(3, 5\)"):
        object_agreement("Pong", context, real, predicted, horizons=[1], valid=np.ones((3, 4), bool))


def test_fidelity_lines_report_ball_and_paddle_agreement(tmp_path, pong_checkpoint):
    from training.fidelity.open_loop import fidelity_lines

    torch.set_num_threads(1)
    collect_main(["--game", "Pong", "--out", str(tmp_path / "data"), "--steps", "200", "--num-envs", "1"])
    dataset = EpisodeDataset(tmp_path / "data", game="Pong")
    model = load_checkpoint(pong_checkpoint).world_model.eval()
    lines = fidelity_lines(model, dataset, np.arange(len(dataset)), [1, 3], samples=6, seed=0)
    assert [line["horizon"] for line in lines] == [1, 3]
    for line in lines:
        assert {"psnr_model", "pooled_psnr_repeat_last", "ball_real", "ball_within_2px_model",
                "paddle_shown_repeat_last"} <= set(line)
        assert line["paddle_real"] == line["samples"]  # the player's paddle is in every real frame
        assert line["paddle_shown_repeat_last"] == 1.0
        assert line["ball_shown_model"] in (None, 0.0)  # an untrained model dreams no ball
    assert lines[0]["ball_real"] > 0
