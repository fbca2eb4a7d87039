"""Breakout's wall (training.data.bricks) on real frames: every brick the game pays for is gone from the wall, in the
row its reward says, and no other brick ever changes."""

import numpy as np
import pytest
from helpers import breakout_play

from training.data.bricks import BRICK_COLUMNS, BRICK_ROWS, brick_wall

ROW_REWARD = [7, 7, 4, 4, 1, 1]  # what the game pays for a brick of each row, top (red) to bottom (blue)


def test_every_brick_paid_for_leaves_the_wall_in_its_row_and_no_other_brick_changes():
    frames, rewards = breakout_play()
    walls = brick_wall(frames)
    assert walls.shape == (len(frames), BRICK_ROWS, BRICK_COLUMNS) and walls[0].all()  # the game starts whole
    assert not (~walls[:-1] & walls[1:]).any()  # a broken brick never comes back (nor does the ball light a gap)
    paid = np.flatnonzero(rewards > 0)
    assert len(paid) >= 8
    for t in paid:  # the game shows the break on the frame it pays for, or on the next
        gone = np.argwhere(walls[t - 1] & ~walls[min(t + 1, len(walls) - 1)])
        assert len(gone) == 1, (t, gone)
        assert ROW_REWARD[gone[0][0]] == rewards[t]
    assert (~walls[-1]).sum() == len(paid)  # and nothing else breaks


def test_a_black_wall_shows_no_brick_and_a_bad_frame_is_refused():
    frames, _ = breakout_play()
    blacked = frames[:1].copy()
    blacked[:, 17:29, 3:61] = 0
    assert not brick_wall(blacked).any()
    assert brick_wall(frames[:0]).shape == (0, BRICK_ROWS, BRICK_COLUMNS)
    with pytest.raises(ValueError, match="frames must be uint8 of shape"):
        brick_wall(frames[0])
