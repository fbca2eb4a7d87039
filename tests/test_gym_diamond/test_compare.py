"""gym_diamond.compare: the dream and the real game from one start, fed the same actions."""

import gymnasium as gym
import numpy as np
import pytest

import gym_diamond  # noqa: F401
from gym_diamond.compare import DreamVsReal, dream_vs_real, psnr, side_by_side
from gym_diamond.render import upscale


def test_psnr_of_known_errors():
    frame = np.full((2, 8, 8, 3), 100, np.uint8)
    off_by_one = frame + np.array([0, 1], np.uint8)[:, None, None, None]
    assert psnr(frame, off_by_one)[0] == pytest.approx(100.0)  # identical frames: the 100 dB ceiling
    assert psnr(frame, off_by_one)[1] == pytest.approx(20 * np.log10(255))  # MSE 1
    assert psnr(np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 255, np.uint8)) == pytest.approx(0.0)


def test_dream_and_real_game_share_start_and_actions(pong_checkpoint):
    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint)
    seen, actions = [], iter([2, 3] * 10)

    def policy(frame):
        seen.append(frame)
        return next(actions)

    result = dream_vs_real(env, policy, steps=6, seed=0)
    assert 1 <= len(result) <= 6 and len(seen) == len(result)
    assert result.real.shape == result.dream.shape == (len(result), 64, 64, 3)
    # the policy played the real game: it saw the shared start, then each real frame it led to
    start, _ = env.reset(seed=0, options={"start": "ale"})
    assert np.array_equal(seen[0], start)
    assert all(np.array_equal(a, b) for a, b in zip(seen[1:], result.real[:-1], strict=False))
    assert np.allclose(result.psnr, psnr(result.real, result.dream))
    colours, counts = np.unique(result.real[0].reshape(-1, 3), axis=0, return_counts=True)
    assert counts.max() > 0.5 * 64 * 64  # a real Pong screen, mostly background
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        dream_vs_real(env, policy, steps=0)


def test_side_by_side_puts_real_left_dream_right_and_marks_the_curve():
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(0)
    real, dream = rng.integers(0, 256, (2, 3, 16, 16, 3), dtype=np.uint8)
    pictures = side_by_side(DreamVsReal(real, dream, psnr(real, dream)), size=64)
    assert len(pictures) == 3
    height, width, _ = pictures[0].shape
    assert width == 2 * 64 + 8 and height > 64 and all(p.shape == pictures[0].shape for p in pictures)
    for step, picture in enumerate(pictures):
        assert np.array_equal(picture[:64, :64], upscale(real[step], 64))
        assert np.array_equal(picture[:64, 72:136], upscale(dream[step], 64))
    red = [np.flatnonzero((p[64:] == (220, 30, 30)).all(axis=-1).all(axis=0)) for p in pictures]
    assert all(len(r) == 1 for r in red) and red[0][0] < red[1][0] < red[2][0]  # the marker moves right
