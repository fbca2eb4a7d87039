"""How faithful is a dream? Play the real game and the dream from the same start with the same actions.

Used by ``examples/dream_vs_real.py`` and the pipeline's demo GIF; the PSNR strip needs the ``[plot]``
extra (matplotlib).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch

from gym_diamond.errors import UserError
from gym_diamond.render import upscale

PSNR_CEILING_DB = 100.0  # identical uint8 frames: the squared error is floored at 1e-10 of the peak's square


def psnr_of_mse(mse: torch.Tensor, peak_to_peak: float, ceiling_db: float = PSNR_CEILING_DB) -> torch.Tensor:
    """PSNR in dB of mean squared errors of signals spanning ``peak_to_peak``, at most ``ceiling_db`` (where the
    error is 0); the one formula every PSNR of the project uses."""
    peak_squared = float(peak_to_peak) ** 2
    return 10 * torch.log10(peak_squared / mse.clamp_min(peak_squared * 10 ** (-ceiling_db / 10)))


def psnr(real: np.ndarray, dream: np.ndarray) -> np.ndarray:
    """PSNR in dB of uint8 frames (..., h, w, c), one value per frame; identical frames give 100 dB."""
    mse = ((real.astype(np.float64) - dream.astype(np.float64)) ** 2).mean(axis=(-3, -2, -1))
    return psnr_of_mse(torch.from_numpy(np.asarray(mse)), 255.0).numpy()


@dataclass(frozen=True)
class DreamVsReal:
    """The frames both saw after each action, and how close they were."""

    real: np.ndarray  # (T, h, w, c) uint8
    dream: np.ndarray  # (T, h, w, c) uint8
    psnr: np.ndarray  # (T,) dB

    def __len__(self) -> int:
        return len(self.psnr)


def dream_vs_real(env: gym.Env, policy: Callable[[np.ndarray], int], steps: int, seed: int | None = None
                  ) -> DreamVsReal:
    """Start ``env`` (a DiamondDream environment) from the real game and feed both the same actions.

    ``policy`` sees the real game's frame, as an agent playing the real game would. Stops after
    ``steps`` steps or when either side's episode ends.
    """
    if not isinstance(steps, int) or steps < 1:
        raise UserError(f"steps must be a positive integer, got {steps!r}")
    dream_obs, _ = env.reset(seed=seed, options={"start": "ale"})
    real_game, real_obs = env.unwrapped.real_game, dream_obs  # the dream starts from the real game's frames
    reals, dreams = [], []
    for _ in range(steps):
        action = policy(real_obs)
        real_obs, _, real_terminated, real_truncated, _ = real_game.step(action)
        dream_obs, _, terminated, truncated, _ = env.step(action)
        reals.append(real_obs)
        dreams.append(dream_obs)
        if real_terminated or real_truncated or terminated or truncated:
            break
    reals, dreams = np.stack(reals), np.stack(dreams)
    return DreamVsReal(reals, dreams, psnr(reals, dreams))


def side_by_side(result: DreamVsReal, size: int = 256) -> list[np.ndarray]:
    """One picture per step: real (left) and dream (right) at ``size`` pixels, the PSNR curve below.

    A red line marks each picture's step on the curve. Write them with e.g. ``imageio.v3.imwrite``.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError('the PSNR plot needs matplotlib: pip install "gym-diamond[plot]"') from e
    gap = 8
    fig, ax = plt.subplots(figsize=((2 * size + gap) / 100, 1.6), dpi=100)
    ax.plot(result.psnr, color="tab:blue")
    ax.set(xlabel="imagined step", ylabel="PSNR (dB)", xlim=(0, max(len(result) - 1, 1)))
    fig.tight_layout()
    fig.canvas.draw()
    plot = np.asarray(fig.canvas.buffer_rgba())[..., :3]
    columns = [int(round(ax.transData.transform((step, 0))[0])) for step in range(len(result))]
    plt.close(fig)
    blank = np.full((size, gap, 3), 255, np.uint8)
    pictures = []
    for real, dream, column in zip(result.real, result.dream, columns, strict=True):
        below = plot.copy()
        below[:, column] = (220, 30, 30)
        top = np.concatenate([upscale(real, size), blank, upscale(dream, size)], axis=1)
        width = max(top.shape[1], below.shape[1])
        pictures.append(np.concatenate([_pad(top, width), _pad(below, width)], axis=0))
    return pictures


def _pad(picture: np.ndarray, width: int) -> np.ndarray:
    """White columns on the right up to ``width``."""
    return np.pad(picture, ((0, 0), (0, width - picture.shape[1]), (0, 0)), constant_values=255)
