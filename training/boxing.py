"""Boxing's two boxers in a 64x64 frame, and a scripted player that chases and punches.

Boxing (Atari, Activision) is a dense-reward game with large objects: a white boxer (the player) and a
black one (the computer) inside a ring of orange ropes on green, a point for each punch that lands
(two for a close one), two minutes a bout. It is the game where a dream trained on random play is most
likely to teach an agent something, and its objects are big enough to check a dream by.

``find_boxers`` reads each boxer as the centre of its colour's pixels inside the ropes (a 64x64 frame
shows a boxer as about 30 pixels; the score digits above the ring, white and black too, are left out).
``BoxingChaser`` plays from it: it walks the white boxer to the black one's row and to ``reach`` pixels
beside it, punching once in range, with a uniform random action with probability ``epsilon``. It is
no champion: the computer's boxer punishes whoever comes close, so the chaser loses points faster than
random play does (measured over 2 bouts: -5 and -11 at reach 8, -20 and -21 at reach 3, random about 0).
That difference is what closed-loop event counts (``training.closed_loop``) need: a dream must show
both how often each side lands a punch for each policy and that the chaser does worse.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BoxingChaser", "Boxers", "find_boxers"]

RING_ROWS = (9, 56)  # inside the ropes (rows 7-57, columns 9-54 of a 64x64 frame), [start, stop)
RING_COLS = (11, 53)
_WHITE = np.array([214, 214, 214], np.float32)
_BLACK = np.array([0, 0, 0], np.float32)
COLOUR_DISTANCE = 60.0  # RGB distance within which a pixel is a boxer's colour (the frame's blends included)
LEAST_PIXELS = 8  # a boxer is seen from this many pixels of its colour (a whole one shows about 30)


@dataclass(frozen=True)
class Boxers:
    """The player's (white) and the opponent's (black) boxer in each of n frames: (x, y), NaN when not seen."""

    player_visible: np.ndarray  # (n,) bool
    player_xy: np.ndarray  # (n, 2) float64: x the column, y the row
    opponent_visible: np.ndarray
    opponent_xy: np.ndarray

    def __len__(self) -> int:
        return len(self.player_visible)


def _centres(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count = mask.sum(axis=(1, 2))
    rows = np.arange(mask.shape[1], dtype=np.float64)[None, :, None]
    cols = np.arange(mask.shape[2], dtype=np.float64)[None, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        xy = np.stack([(mask * cols).sum(axis=(1, 2)) / count, (mask * rows).sum(axis=(1, 2)) / count], axis=1)
    visible = count >= LEAST_PIXELS
    xy[~visible] = np.nan
    return visible, xy + np.array([RING_COLS[0], RING_ROWS[0]], np.float64)


def find_boxers(frames: np.ndarray) -> Boxers:
    """The boxers in uint8 frames (n, 64, 64, 3) (or one frame (64, 64, 3))."""
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[1:] != (64, 64, 3):
        raise ValueError(f"frames must be (n, 64, 64, 3) uint8, got {frames.shape}")
    ring = frames[:, slice(*RING_ROWS), slice(*RING_COLS)].astype(np.float32)
    player = _centres(np.linalg.norm(ring - _WHITE, axis=-1) < COLOUR_DISTANCE)
    opponent = _centres(np.linalg.norm(ring - _BLACK, axis=-1) < COLOUR_DISTANCE)
    return Boxers(player[0], player[1], opponent[0], opponent[1])


# Boxing's action set: NOOP FIRE UP RIGHT LEFT DOWN UPRIGHT UPLEFT DOWNRIGHT DOWNLEFT, then the same with FIRE
# (UPFIRE RIGHTFIRE LEFTFIRE DOWNFIRE UPRIGHTFIRE UPLEFTFIRE DOWNRIGHTFIRE DOWNLEFTFIRE)
_MOVES = {(0, 0): 0, (0, -1): 2, (1, 0): 3, (-1, 0): 4, (0, 1): 5, (1, -1): 6, (-1, -1): 7, (1, 1): 8, (-1, 1): 9}
_FIRE = 1
_WITH_FIRE = np.array([1, 1, 10, 11, 12, 13, 14, 15, 16, 17] + list(range(10, 18)), dtype=np.int64)  # action -> +FIRE


class BoxingChaser:
    """Walks to the opponent's row and to ``reach`` pixels beside it, punching within ``punch_range`` pixels on its
    row; a uniform random action with probability ``epsilon``.

    Implements ``training.agents.Agent``, batched over environments with numpy.
    """

    def __init__(self, num_actions: int = 18, *, epsilon: float = 0.0, reach: float = 8.0, row_slack: float = 2.0,
                 punch_range: float = 14.0, seed: int | None = None) -> None:
        if num_actions != 18:
            raise ValueError(f"Boxing has 18 actions, got num_actions={num_actions}")
        if not 0 <= epsilon <= 1:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.num_actions, self.epsilon, self.reach, self.row_slack = num_actions, epsilon, reach, row_slack
        self.punch_range = punch_range
        self.rng = np.random.default_rng(seed)

    def describe(self) -> dict[str, object]:
        """What played, for the provenance of data and of the models trained on it."""
        return {"policy": "BoxingChaser", "game": "Boxing", "epsilon": self.epsilon, "reach": self.reach}

    def reset(self, mask: np.ndarray) -> None:
        """The player has no memory: nothing to forget."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        boxers = find_boxers(obs)
        dx = boxers.opponent_xy[:, 0] - boxers.player_xy[:, 0]
        dy = boxers.opponent_xy[:, 1] - boxers.player_xy[:, 1]
        seen = boxers.player_visible & boxers.opponent_visible
        dx, dy = np.where(seen, dx, 0.0), np.where(seen, dy, 0.0)
        # horizontally: toward a spot ``reach`` pixels beside the opponent, on the side the player is on
        target_gap = np.where(dx >= 0, self.reach, -self.reach)
        step_x = np.sign(np.where(np.abs(dx - target_gap) > 1.0, dx - target_gap, 0.0)).astype(int)
        step_y = np.sign(np.where(np.abs(dy) > self.row_slack, dy, 0.0)).astype(int)
        actions = np.array([_MOVES[(x, y)] for x, y in zip(step_x, step_y, strict=True)], dtype=np.int64)
        in_reach = seen & (np.abs(dy) <= self.row_slack) & (np.abs(dx) <= self.punch_range)
        actions[in_reach] = _WITH_FIRE[actions[in_reach]]  # punch while closing in
        explore = self.rng.random(len(obs)) < self.epsilon
        return np.where(explore, self.rng.integers(0, self.num_actions, len(obs)), actions)
