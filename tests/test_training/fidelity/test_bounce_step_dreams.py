"""Bounce steps (training.fidelity.bounce_steps): each step of a real return dreamt from the real frames before it,
with a stand-in model that knows every real next frame and drops the ball near the player's paddle, in its dreams
and in its denoiser above a noise level."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from helpers import pong_frame

from gym_diamond import to_model_frames, to_uint8_frames
from training.data.ball_paths import return_geometry
from training.data.dataset import Episode, EpisodeDataset
from training.data.objects import find_objects
from training.fidelity.bounce_steps import bounce_steps, hinted_frames

PADDLE = return_geometry("Pong").paddle_line
NEAR = 3  # the stand-in drops a ball this close to the paddle's column


def _episode(xs: list[float | None]) -> Episode:
    T = len(xs) - 1
    return Episode(np.stack([pong_frame(x) for x in xs]), np.zeros(T, np.int64), np.zeros(T, np.float32),
                   np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool))


class NearPaddleDropper:
    """Looks each real next frame up by the last two context frames (a frame it has not seen: a black one) and
    draws it, without the ball where that lies within ``NEAR`` columns of the paddle; its denoiser does the same at
    noise levels from ``drops_from`` up and returns the real frame below them."""

    frame_shape = (3, 64, 64)
    device = torch.device("cpu")
    acceleration = SimpleNamespace(autocast=None)
    config = SimpleNamespace(denoiser=SimpleNamespace(context_length=4), sampler=SimpleNamespace(quantization="floor"))

    def __init__(self, dataset: EpisodeDataset, xs: list[list[float | None]], drops_from: float) -> None:
        self.next_frames = {}
        for balls in xs:
            for t in range(1, len(balls) - 1):
                key = pong_frame(balls[t - 1]).tobytes() + pong_frame(balls[t]).tobytes()
                near = balls[t + 1] is not None and balls[t + 1] >= PADDLE - NEAR
                self.next_frames[key] = (pong_frame(balls[t + 1]), pong_frame(None if near else balls[t + 1]))
        self.drops_from = drops_from
        self.denoiser = SimpleNamespace(training=False, eval=lambda: None, train=lambda mode: None,
                                        denoise=self._denoise)

    def _next(self, context: torch.Tensor, dropped: bool) -> torch.Tensor:
        last_two = to_uint8_frames(context[:, -2:]).numpy()
        black = np.zeros((64, 64, 3), np.uint8)
        frames = [self.next_frames.get(pair.tobytes(), (black, black))[int(dropped)] for pair in last_two]
        return to_model_frames(torch.as_tensor(np.stack(frames)))

    def imagine_step(self, frames, actions, generator=None):
        return SimpleNamespace(next_frame=self._next(frames, dropped=True))

    def _denoise(self, noisy, sigma, context, actions, autocast=None, quantization=None):
        assert noisy.shape == context[:, -1].shape and quantization == "floor"
        return self._next(context, dropped=bool(sigma[0] >= self.drops_from))


RALLY = [30, 34, 38, 42, 46, 50, 54, 50, 46, 42, 38, 34]  # approaches at frames 5 (50) and 6 (54), back at 7


def test_each_step_of_a_return_is_dreamt_from_the_real_frames_before_it(tmp_path):
    dataset = EpisodeDataset(tmp_path / "pong", game="Pong")
    dataset.append(_episode(RALLY))
    report = bounce_steps(NearPaddleDropper(dataset, [RALLY], drops_from=2.0), dataset, [0], samples=8)
    assert report.returns == 2 and [s.step for s in report.steps] == [1, 2, 3, 4]  # Pong's return horizon
    # step 1 of the approach at frame 5 is the ball at 54, by the paddle: dropped; every other step is far from it
    first, *rest = report.steps
    assert (first.dreamt.real, first.dreamt.shown, first.dreamt.within) == (2, 1, 1)
    assert all((s.dreamt.real, s.dreamt.within) == (2, 2) for s in rest)  # a dream fed its own frames loses these
    assert {sigma: score.within for sigma, score in first.hinted.items()} == {5.0: 1, 2.0: 1, 1.0: 2, 0.5: 2}
    assert first.to_dict() == {"step": 1, "real": 2, "shown": 0.5, "within": 0.5,
                               "hinted_within": {"5.0": 0.5, "2.0": 0.5, "1.0": 1.0, "0.5": 1.0}}
    assert bounce_steps(NearPaddleDropper(dataset, [RALLY], 2.0), dataset, [0], samples=1).returns == 1
    assert bounce_steps(NearPaddleDropper(dataset, [RALLY], 2.0), dataset, [], samples=4).steps[0].to_dict()[
        "within"] is None
    with pytest.raises(ValueError, match="samples and batch_size must be >= 1"):
        bounce_steps(NearPaddleDropper(dataset, [RALLY], 2.0), dataset, [0], samples=0)
    with pytest.raises(ValueError, match="sigmas must be noise levels > 0"):
        bounce_steps(NearPaddleDropper(dataset, [RALLY], 2.0), dataset, [0], sigmas=[0.0])


def test_the_frames_behind_a_step_are_the_ones_it_counts(tmp_path):
    dataset = EpisodeDataset(tmp_path / "pong", game="Pong")
    dataset.append(_episode(RALLY))
    dropper = NearPaddleDropper(dataset, [RALLY], drops_from=2.0)
    seen = hinted_frames(dropper, dataset, [0], step=1, sigma=5.0, samples=8)
    assert seen.frames.shape == (2, 5, 64, 64, 3) and seen.estimates.shape == (2, 64, 64, 3)
    real_balls = find_objects("Pong", seen.frames[:, -1]).ball_xy[:, 0]
    assert real_balls.tolist() == [54, 50]  # step 1 of the approaches at frames 5 and 6
    assert find_objects("Pong", seen.estimates).ball_visible.tolist() == [False, True]  # the first by the paddle
    assert find_objects("Pong", hinted_frames(dropper, dataset, [0], step=1, sigma=0.5).estimates).ball_visible.all()
    with pytest.raises(ValueError, match="step must be 1 to 4"):
        hinted_frames(dropper, dataset, [0], step=5, sigma=0.5)
