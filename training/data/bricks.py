"""Which of Breakout's 108 bricks a 64x64 frame shows (6 rows of 18, ``brick_wall``).

Breakout pays for bricks, and a brick is 3 x 2 pixels of the 64 x 64 frame: PSNR barely notices a dream that keeps a
brick the ball broke, or breaks one it never touched, yet the reward and the game both turn on it. The game draws its
bricks at fixed places of its 210 x 160 screen (rows 57-92, six rows of 6 lines; columns 8-151, eighteen bricks of 8
columns), which the environment shrinks to 64 x 64 with area interpolation: a brick covers its own pixels whole or in
part. A brick is shown when more than half of its *core* (the pixels it covers at least ``CORE_ROWS`` of their height
and wholly across) is bright (a channel of at least ``BRIGHT``: every brick colour reaches 160-200, the black behind
them 0, the grey walls lie outside). The ball (one pixel) passing through a gap lights at most one pixel of a core of
2 to 6.
"""

from __future__ import annotations

import numpy as np

from gym_diamond.atari import FRAME_SIZE
from gym_diamond.errors import UserError

__all__ = ["BRICK_COLUMNS", "BRICK_ROWS", "brick_wall"]

BRICK_ROWS, BRICK_COLUMNS = 6, 18
SCREEN_HEIGHT, SCREEN_WIDTH = 210, 160  # the game's own screen
_TOP, _ROW_LINES = 57, 6  # the first brick row's first screen line, and the lines of a row
_LEFT, _BRICK_WIDTH = 8, 8  # the first brick's first screen column, and the columns of a brick
CORE_ROWS = 0.6  # the least share of a pixel's height a brick covers for the pixel to be of its core
BRIGHT = 80  # the least value of a pixel's brightest channel for it to show a brick


def _pixel_shares(start: int, stop: int, screen: int) -> np.ndarray:
    """The share of each of the 64 pixels (along one axis) that the screen span [start, stop) covers."""
    size = screen / FRAME_SIZE
    low, high = np.arange(FRAME_SIZE) * size, (np.arange(FRAME_SIZE) + 1) * size
    return np.clip(np.minimum(high, stop) - np.maximum(low, start), 0, None) / size


def _brick_cores() -> tuple[np.ndarray, np.ndarray]:
    """Each brick's core pixels as flat indices into a 64 x 64 frame, (108, k) padded with -1, and their counts."""
    cores = []
    for row in range(BRICK_ROWS):
        rows = _pixel_shares(_TOP + _ROW_LINES * row, _TOP + _ROW_LINES * (row + 1), SCREEN_HEIGHT) >= CORE_ROWS
        for column in range(BRICK_COLUMNS):
            left = _LEFT + _BRICK_WIDTH * column
            cols = _pixel_shares(left, left + _BRICK_WIDTH, SCREEN_WIDTH) >= 1.0
            cores.append(np.flatnonzero(np.outer(rows, cols)))
    counts = np.array([len(core) for core in cores])
    padded = np.full((len(cores), counts.max()), -1)
    for i, core in enumerate(cores):
        padded[i, :len(core)] = core
    return padded, counts


_CORES, _CORE_SIZES = _brick_cores()


def brick_wall(frames: np.ndarray) -> np.ndarray:
    """Which bricks uint8 Breakout frames (n, 64, 64, 3) show: bool (n, 6, 18), row 0 the top (red) row."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3) or frames.dtype != np.uint8:
        raise UserError(f"frames must be uint8 of shape (n, 64, 64, 3), got {frames.dtype} {frames.shape}")
    bright = (frames.max(-1) >= BRIGHT).reshape(len(frames), FRAME_SIZE * FRAME_SIZE)
    lit = np.where(_CORES >= 0, bright[:, np.maximum(_CORES, 0)], False).sum(-1)  # (n, 108)
    return (2 * lit > _CORE_SIZES).reshape(len(frames), BRICK_ROWS, BRICK_COLUMNS)
