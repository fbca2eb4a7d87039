"""Where the ball and the player's paddle are in a 64x64 frame of Pong or Breakout (colour masks).

PSNR barely notices a dream that drops the Pong ball (one or two pixels of 4096), yet an agent
trained in that dream learns nothing about returning it. ``find_objects`` reads both objects from
the frames themselves, so that real and dreamed frames can be compared on what control needs
(``training.fidelity.measures.object_agreement``), and ``training.data.scripted.BallFollower`` plays from it.

Each pixel gets a coverage in [0, 1] for each object: how much of it the object's colour covers, after
the environment shrinks the screen to 64x64 with area interpolation (a ball covering part of a pixel
blends with the background, on the line from the background's colour to the ball's; ``_along``). Pong:
the court is brown, the ball white, the player's paddle green (the right one), the opponent's orange.
Breakout: the ball and the paddle are the same red on black, told apart by where they are (the paddle
runs along rows 57-59, the ball flies above it; the brick band, red bricks included, is left out).
Pixels of coverage >= ``PIXEL_COVERAGE`` count (for the ball, not those in a run along a row wider than any ball: a
bar's edge that a dream draws a little low or soft); the object is the small window (3x3 for a ball, a
paddle's size for a paddle) that holds the most of their coverage, seen when that is at least
``BALL_COVERAGE`` for a ball (a whole ball covers about one pixel), or the paddle's least. Its centre is
the coverage-weighted mean position in the window, which places a ball blended over two pixels between
them (within about a pixel of the emulator's own position in real play, through a linear fit to the
emulator's memory).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import astuple, dataclass
from typing import NamedTuple

import numpy as np

from gym_diamond.atari import FRAME_SIZE, game_to_name
from gym_diamond.errors import UserError

__all__ = ["OBJECT_GAMES", "Boxers", "Objects", "count_balls", "court_kept", "court_scene", "find_boxers",
           "find_objects", "object_game"]

PIXEL_COVERAGE = 0.15  # a pixel counts toward an object from this share of its colour
BALL_COVERAGE = 0.4  # a ball is seen when its counted pixels add up to this many whole pixels
LIKE_THE_GAME = 0.9  # the least share of the pixels where objects can be that look like the game, for any object
NEAR_BACKGROUND = 24.0  # RGB distance within which a pixel is background, a dream's noise and all
CHUNK = 256  # frames looked at together
BALL_WINDOW = (3, 3)  # rows, columns: a ball (about 1 x 1 pixel) blends over at most 3 x 2 pixels
BALL_WIDEST = 3  # columns: a longer run of touched pixels along a row is a bar's edge, not a ball
TOUCHED = 0.05  # a pixel's least coverage to be part of a run: a soft edge's faint ends included, no real ball's
COURT_DISTANCE = 48.0  # RGB distance within which a pixel of the fixed court is drawn as the game draws it


@dataclass(frozen=True)
class Objects:
    """Ball and player's paddle in each of n frames: x is the column, y the row (0..63), NaN when not seen."""

    ball_visible: np.ndarray  # (n,) bool
    ball_xy: np.ndarray  # (n, 2) float64 (x, y)
    paddle_visible: np.ndarray  # (n,) bool
    paddle_xy: np.ndarray  # (n, 2) float64 (x, y)

    def __len__(self) -> int:
        return len(self.ball_visible)

    def of(self, thing: str) -> tuple[np.ndarray, np.ndarray]:
        """(visible, xy) of ``thing``: "ball" or "paddle"."""
        if thing not in ("ball", "paddle"):
            raise UserError(f"thing must be 'ball' or 'paddle', got {thing!r}")
        return getattr(self, f"{thing}_visible"), getattr(self, f"{thing}_xy")

    def __getitem__(self, index: np.ndarray | slice) -> Objects:
        """The objects of some of the frames (a bool mask, indices or a slice)."""
        return Objects(self.ball_visible[index], self.ball_xy[index], self.paddle_visible[index],
                       self.paddle_xy[index])


def _region(rows: list[tuple[int, int]], cols: tuple[int, int]) -> np.ndarray:
    """A (64, 64) bool mask: the union of the row ranges [start, stop), within columns [start, stop)."""
    mask = np.zeros((FRAME_SIZE, FRAME_SIZE), bool)
    for start, stop in rows:
        mask[start:stop, cols[0]:cols[1]] = True
    return mask


def _box(mask: np.ndarray) -> tuple[slice, slice]:
    """The rows and columns that hold the true pixels of a 2-D mask."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


COLOUR_COS = 0.98  # a pixel counts for an object only within 11 degrees of the line from background to its colour


def _along(offset: np.ndarray, norm: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The share of ``colour`` in each pixel where the pixel lies on the line from the background to it; else 0.

    ``offset`` (..., 3): the pixels less the background; ``norm`` (...): their lengths; ``colour`` (3,): the
    colour less the background. A pixel an object covers in part blends its colour with the background, on
    the line; a dream's off-colour smear, or noise, mostly is not.
    """
    along = offset @ colour
    return np.where(along >= COLOUR_COS * np.linalg.norm(colour) * norm, along / (colour @ colour), 0)


_PONG_COURT = np.array([144, 72, 17], np.float32)
# what white (ball), green (player's paddle) and orange (opponent's paddle) add to the court's brown
_PONG_WHITE, _PONG_GREEN, _PONG_ORANGE = np.array([[236, 236, 236], [92, 186, 92], [213, 130, 74]],
                                                  np.float32) - _PONG_COURT
_PONG_UNMIX_ORANGE = np.linalg.inv(np.stack([_PONG_WHITE, _PONG_GREEN, _PONG_ORANGE]))[:, 2].astype(np.float32)
_PONG_MAX_ORANGE = 0.3  # a pixel with more orange is the opponent's paddle, however white (under the bar's edge)


def _pong_coverage(offset: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Shares of the ball's white and the player's green in each pixel, (n, 64, 64) each.

    White and orange lie 23 degrees apart: the opponent's paddle under the bar's edge blends them into a
    near white, so pixels with much orange (unmixed from white and green) are no ball. Only the white
    beyond what most of the row holds counts: row 10, the lower edge of the top bar, is a third white all
    along, and a ball bouncing off the bar whitens it further.
    """
    white = np.where(offset @ _PONG_UNMIX_ORANGE < _PONG_MAX_ORANGE, _along(offset, norm, _PONG_WHITE), 0)
    row = np.median(white, axis=2, keepdims=True)
    ball = (white - row) / np.maximum(1 - row, 0.5)
    return np.clip(ball, 0, 1), np.clip(_along(offset, norm, _PONG_GREEN), 0, 1)


_BREAKOUT_RED = np.array([200, 72, 72], np.float32)  # on black


def _breakout_coverage(offset: np.ndarray, norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Share of red (ball and paddle alike) in each pixel, for both objects; the regions tell them apart."""
    coverage = np.clip(_along(offset, norm, _BREAKOUT_RED), 0, 1)
    return coverage, coverage


@dataclass(frozen=True)
class _Scene:
    """How one game draws the two objects: its colours, where each object can be, how big a paddle is."""

    background: np.ndarray  # (3,) the colour behind the objects
    colours: np.ndarray  # (k, 3) the game's colours in the regions, less the background
    coverage: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]  # (offset, norm) -> ball, paddle
    ball_region: np.ndarray  # (64, 64) bool
    paddle_region: np.ndarray
    paddle_window: tuple[int, int]  # (rows, columns) that hold the whole paddle
    paddle_coverage: float  # the least coverage of a paddle: most of it, even half under a bar
    court: np.ndarray  # (64, 64) bool: the walls, drawn in every frame of the game in ``court_colour``
    court_colour: np.ndarray  # (3,)


_SCENES = {
    # Pong: the court is rows 10-58 between white bars (row 10 a third white, row 59 mostly); the player's
    # green paddle is the right one, at column ~56, and slides partly under the bars at either end.
    "Pong": _Scene(_PONG_COURT, np.stack([_PONG_WHITE, _PONG_GREEN, _PONG_ORANGE]), _pong_coverage,
                   ball_region=_region([(10, 59)], (0, 64)), paddle_region=_region([(10, 60)], (52, 61)),
                   paddle_window=(7, 3), paddle_coverage=1.0,
                   court=_region([(8, 10), (60, 64)], (0, 64)), court_colour=np.array([236, 236, 236], np.float32)),
    # Breakout: walls at columns 0-2 and 61-63 (red and teal at their feet), bricks in rows 17-28 (the top
    # row red like the ball), the paddle in rows 57-59. The ball is seen above and below the bricks.
    "Breakout": _Scene(np.zeros(3, np.float32), _BREAKOUT_RED[None], _breakout_coverage,
                       ball_region=_region([(10, 17), (29, 57)], (3, 61)), paddle_region=_region([(57, 60)], (3, 61)),
                       paddle_window=(3, 9), paddle_coverage=2.0,
                       court=_region([(6, 9)], (0, 64)) | _region([(10, 57)], (0, 2)) | _region([(10, 57)], (62, 64)),
                       court_colour=np.array([142, 142, 142], np.float32)),
}
OBJECT_GAMES = tuple(sorted(_SCENES))


def _window_sums(weights: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """Sum of ``weights`` (n, H, W) over every ``window`` (h, w) position: (n, H-h+1, W-w+1)."""
    h, w = window
    total = np.zeros((weights.shape[0], weights.shape[1] + 1, weights.shape[2] + 1))
    total[:, 1:, 1:] = weights.cumsum(1).cumsum(2)
    return total[:, h:, w:] - total[:, :-h, w:] - total[:, h:, :-w] + total[:, :-h, :-w]


def _locate(coverage: np.ndarray, region: np.ndarray, window: tuple[int, int],
            least: float) -> tuple[np.ndarray, np.ndarray]:
    """Whether an object is seen in each frame (n,) and its centre (n, 2) as (x, y).

    The object is the ``window`` (rows, columns) of the region that holds the most coverage, seen if that
    is at least ``least``: faint specks scattered over the frame (a dream's noise) neither add up to an
    object nor pull its centre.
    """
    n, (h, w) = len(coverage), window
    box_rows, box_cols = _box(region)
    coverage, region = coverage[:, box_rows, box_cols], region[box_rows, box_cols]
    weights = np.where(region & (coverage >= PIXEL_COVERAGE), coverage, 0).astype(np.float64)
    sums = _window_sums(weights, window)
    top, left = np.divmod(sums.reshape(n, -1).argmax(1), sums.shape[2]) if n else (np.zeros(0, int),) * 2
    rows, cols = top[:, None] + np.arange(h), left[:, None] + np.arange(w)
    patch = weights[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]  # (n, h, w)
    total = patch.sum(axis=(1, 2))
    visible = total >= least
    safe = np.maximum(total, 1e-12)
    xy = np.stack([box_cols.start + (patch.sum(1) * cols).sum(1) / safe,
                   box_rows.start + (patch.sum(2) * rows).sum(1) / safe], axis=1)
    xy[~visible] = np.nan
    return visible, xy


def _like_the_game(offset: np.ndarray, norm: np.ndarray, colours: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Whether most pixels of ``region`` are background or blends of the game's ``colours`` with it, (n,).

    A frame that is not (a dream gone to coloured mush) shows no objects, though specks of its colours
    would pass for some.
    """
    plain = norm <= NEAR_BACKGROUND
    for colour in colours:
        plain |= offset @ colour > COLOUR_COS * np.linalg.norm(colour) * norm
    return np.count_nonzero(plain & region, axis=(1, 2)) >= LIKE_THE_GAME * region.sum()


class _Coverages(NamedTuple):
    """A frame batch read in the pixels where objects can be: each object's coverage (n, h, w), where each can be
    (h, w), whether each frame looks like the game (n,), and the (x, y) of the box's corner in the frame."""

    ball: np.ndarray
    paddle: np.ndarray
    ball_region: np.ndarray
    paddle_region: np.ndarray
    game_like: np.ndarray
    corner: np.ndarray


def _coverages(scene: _Scene, frames: np.ndarray) -> _Coverages:
    """``scene``'s objects' coverage in uint8 ``frames`` (n, 64, 64, 3), only in the box where objects can be."""
    rows, cols = _box(scene.ball_region | scene.paddle_region)
    offset = frames[:, rows, cols].astype(np.float32) - scene.background
    norm = np.sqrt(np.einsum("...c,...c->...", offset, offset))
    ball_region, paddle_region = scene.ball_region[rows, cols], scene.paddle_region[rows, cols]
    ball, paddle = scene.coverage(offset, norm)
    ball = _without_streaks(ball)
    game_like = _like_the_game(offset, norm, scene.colours, ball_region | paddle_region)
    return _Coverages(ball, paddle, ball_region, paddle_region, game_like, np.array([cols.start, rows.start]))


def _without_streaks(coverage: np.ndarray) -> np.ndarray:
    """``coverage`` (n, h, w) less the pixels in runs of more than ``BALL_WIDEST`` touched pixels along a row.

    A ball is at most two pixels wide (three with a dream's blur; its coverage falls below ``TOUCHED`` beside it); a
    dream that draws a bar's edge a little low or a little soft (Pong's walls, Breakout's paddle) lays a streak of
    partial coverage along the row next to it, uneven and fading at its ends, which ball-sized windows would otherwise
    read as one ball or several.
    """
    touched = coverage >= TOUCHED
    span, width = BALL_WIDEST + 1, touched.shape[2]  # a pixel is in a longer run iff it lies in `span` touched ones
    starts = np.logical_and.reduce([touched[:, :, k:width - span + 1 + k] for k in range(span)])
    in_streak = np.zeros_like(touched)
    for k in range(span):
        in_streak[:, :, k:width - span + 1 + k] |= starts
    return np.where(in_streak, 0, coverage)


def _checked_frames(frames: np.ndarray) -> np.ndarray:
    """``frames`` as an array, if they are uint8 frames (n, 64, 64, 3); else a clear error."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[1:] != (FRAME_SIZE, FRAME_SIZE, 3) or frames.dtype != np.uint8:
        raise UserError(f"frames must be uint8 of shape (n, {FRAME_SIZE}, {FRAME_SIZE}, 3), "
                        f"got {frames.dtype} of shape {frames.shape}")
    return frames


def object_game(game: str) -> str:
    """The CamelCase name of ``game`` if ``find_objects`` knows how it draws its objects; else ValueError."""
    name = game_to_name(game)
    if name not in _SCENES:
        raise UserError(f"no object detector for {name}: supported games are {', '.join(OBJECT_GAMES)}")
    return name


def find_objects(game: str, frames: np.ndarray) -> Objects:
    """The ball and the player's paddle in each of the uint8 frames (n, 64, 64, 3) of ``game``."""
    scene, frames = _SCENES[object_game(game)], _checked_frames(frames)
    if len(frames) > CHUNK:  # a few hundred frames at a time stay in the processor's cache
        parts = [find_objects(game, frames[i:i + CHUNK]) for i in range(0, len(frames), CHUNK)]
        return Objects(*(np.concatenate(field) for field in zip(*(astuple(p) for p in parts), strict=True)))
    c = _coverages(scene, frames)
    ball_visible, ball_xy = _locate(c.ball, c.ball_region, BALL_WINDOW, BALL_COVERAGE)
    paddle_visible, paddle_xy = _locate(c.paddle, c.paddle_region, scene.paddle_window, scene.paddle_coverage)
    ball_xy[~c.game_like], paddle_xy[~c.game_like] = np.nan, np.nan
    return Objects(ball_visible & c.game_like, ball_xy + c.corner, paddle_visible & c.game_like, paddle_xy + c.corner)


def count_balls(game: str, frames: np.ndarray, most: int = 4) -> np.ndarray:
    """How many balls each uint8 frame (n, 64, 64, 3) of ``game`` shows, up to ``most``: separate windows of a ball's
    size that each hold a ball's coverage, as ``find_objects`` sees one. The game has one ball; a dream that drifts
    over its own frames can draw two or three, which ``find_objects``, looking for one, would not tell."""
    scene, frames = _SCENES[object_game(game)], _checked_frames(frames)
    if most < 1:
        raise UserError(f"most must be >= 1, got {most}")
    c = _coverages(scene, frames)
    weights = np.where(c.ball_region & (c.ball >= PIXEL_COVERAGE), c.ball, 0).astype(np.float64)
    n, (h, w) = len(frames), BALL_WINDOW
    count = np.zeros(n, np.int64)
    for _ in range(most):  # take the fullest window, then clear it and the pixels around it
        sums = _window_sums(weights, BALL_WINDOW)
        top, left = np.divmod(sums.reshape(n, -1).argmax(1), sums.shape[2]) if n else (np.zeros(0, int),) * 2
        found = sums.reshape(n, -1).max(1, initial=0) >= BALL_COVERAGE
        count += found
        for i in np.nonzero(found)[0]:
            weights[i, max(top[i] - 1, 0):top[i] + h + 1, max(left[i] - 1, 0):left[i] + w + 1] = 0
    return np.where(c.game_like, count, 0)


def court_scene(game: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``game``'s fixed court: its walls (64, 64) bool, their colour (3,) and the background's colour (3,)."""
    scene = _SCENES[object_game(game)]
    return scene.court.copy(), scene.court_colour.copy(), scene.background.copy()


def court_kept(game: str, frames: np.ndarray) -> np.ndarray:
    """The share of ``game``'s fixed court (its walls, the same in every frame of the game) that each uint8 frame
    (n, 64, 64, 3) draws in the game's colour, (n,): 1.0 in real play; a dream that drifts over its own frames lets
    its walls shrink and go."""
    scene, frames = _SCENES[object_game(game)], _checked_frames(frames)
    distance = np.linalg.norm(frames[:, scene.court].astype(np.float32) - scene.court_colour, axis=-1)
    return (distance <= COURT_DISTANCE).mean(axis=1)


OPPONENT_COLUMNS = (5, 10)  # Pong's opponent paddle (orange, the left one) lies in column 7 of a 64x64 frame
OPPONENT_COVERAGE = 0.5  # a row of those columns with this much orange shows the paddle


@dataclass(frozen=True)
class OpponentPaddle:
    """Pong's opponent paddle in each of n frames. The game draws one paddle of about 5 rows (fewer half under a
    bar); a dream unsure where it went can draw it in two or three pieces, and a ball then passes between them."""

    rows: np.ndarray  # (n,) int: rows that show the paddle's orange
    pieces: np.ndarray  # (n,) int: separate runs of such rows (1 in the game, 0 where it is hidden)
    centre_y: np.ndarray  # (n,) float64: the mean of those rows, NaN where none


def find_opponent_paddle(frames: np.ndarray) -> OpponentPaddle:
    """Pong's opponent paddle in uint8 ``frames`` (n, 64, 64, 3): the rows of its columns within the court that
    hold its orange, and how many separate pieces they make."""
    scene, frames = _SCENES["Pong"], _checked_frames(frames)
    strip = frames[:, 10:60, OPPONENT_COLUMNS[0]:OPPONENT_COLUMNS[1]].astype(np.float32) - scene.background
    shown = (_along(strip, np.linalg.norm(strip, axis=-1), _PONG_ORANGE) >= OPPONENT_COVERAGE).any(axis=2)
    edges = np.diff(np.pad(shown.astype(np.int8), ((0, 0), (1, 1))), axis=1)
    rows = shown.sum(axis=1)
    with np.errstate(invalid="ignore"):
        centre = (shown * np.arange(10, 60)).sum(axis=1) / rows
    return OpponentPaddle(rows, (edges == 1).sum(axis=1), np.where(rows > 0, centre, np.nan))


# ------------------------------------------------------------------------------------------------ Boxing
# Boxing shows a white boxer (the player) and a black one (the computer) inside a ring of orange ropes on green.
# ``find_boxers`` reads each as the centre of its colour's pixels inside the ropes (a boxer shows as about 30
# pixels; the score digits above the ring, white and black too, are left out).
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
        raise UserError(f"frames must be (n, 64, 64, 3) uint8, got {frames.shape}")
    ring = frames[:, slice(*RING_ROWS), slice(*RING_COLS)].astype(np.float32)
    player = _centres(np.linalg.norm(ring - _WHITE, axis=-1) < COLOUR_DISTANCE)
    opponent = _centres(np.linalg.norm(ring - _BLACK, axis=-1) < COLOUR_DISTANCE)
    return Boxers(player[0], player[1], opponent[0], opponent[1])
