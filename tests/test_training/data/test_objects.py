"""The ball and paddle detector (training.data.objects) on real frames of Pong and Breakout."""

from dataclasses import dataclass
from functools import cache

import numpy as np
import pytest

from gym_diamond.atari import make_atari_env
from training.data.objects import (
    OBJECT_GAMES,
    count_balls,
    court_kept,
    find_objects,
    find_opponent_paddle,
    object_game,
)
from training.data.scripted import BallFollower

# Where the emulator keeps the ball and the player's paddle (the annotated Atari RAM of Anand et al., 2019,
# "Unsupervised State Representation Learning in Atari"): (ball x, ball y, paddle position along its axis)
RAM = {"Pong": (49, 54, 51), "Breakout": (99, 101, 72)}
PADDLE_AXIS = {"Pong": 1, "Breakout": 0}  # the paddle moves along y in Pong, along x in Breakout
EPSILON = {"Pong": 0.5, "Breakout": 0.1}  # how often the player acts at random: Pong points are won and lost


@dataclass
class Play:
    frames: np.ndarray  # (T+1, 64, 64, 3)
    ram: np.ndarray  # (T+1, 128)
    rewards: np.ndarray  # (T+1,): the reward of the step that led to each frame (0 for the first)
    life_loss: np.ndarray  # (T+1,) bool


@cache
def play(game: str, steps: int = 400) -> Play:
    """A real game played by the ball follower, so that the ball is in play most of the time."""
    env = make_atari_env(game, seed=1)
    obs, _ = env.reset(seed=1)
    player = BallFollower(game, int(env.action_space.n), epsilon=EPSILON[game], seed=1)
    frames, ram, rewards, life_loss = [obs], [env.ale.getRAM().copy()], [0.0], [False]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(player.act(obs[None])[0]))
        assert not (terminated or truncated)
        frames.append(obs)
        ram.append(env.ale.getRAM().copy())
        rewards.append(reward)
        life_loss.append(info["life_loss"])
    env.close()
    return Play(np.stack(frames), np.stack(ram).astype(np.float64), np.array(rewards), np.array(life_loss))


def steps_since(events: np.ndarray) -> np.ndarray:
    """For each frame, the steps since the last event (the first frame counts as one)."""
    last, out = 0, np.zeros(len(events), np.int64)
    for t, event in enumerate(events):
        last = t if event or t == 0 else last
        out[t] = t - last
    return out


def test_pong_ball_is_seen_in_play_and_gone_between_points():
    game = play("Pong")
    objects = find_objects("Pong", game.frames)
    assert objects.paddle_visible.all()
    assert (game.rewards > 0).sum() >= 1 and (game.rewards < 0).sum() >= 1  # points were won and lost
    since_point = steps_since(game.rewards != 0)
    in_play = since_point > 16  # after a point the ball is away for 15 steps, then served again
    assert objects.ball_visible[in_play].mean() > 0.97
    assert objects.ball_visible[(since_point >= 1) & (since_point <= 10)].mean() < 0.05
    assert np.isnan(objects.ball_xy[~objects.ball_visible]).all()


def absent_runs(visible: np.ndarray) -> list[tuple[int, int]]:
    """(first, last + 1) of each run of frames without a ball."""
    edges = np.diff(np.concatenate([[0], (~visible).astype(int), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True))


def test_breakout_ball_is_lost_only_for_moments_while_in_play():
    """It is not looked for in the brick band, nor told from the paddle while it touches it (same red)."""
    game = play("Breakout")
    objects = find_objects("Breakout", game.frames)
    assert objects.paddle_visible.all()
    assert objects.ball_visible.mean() > 0.9 and (game.rewards > 0).sum() >= 5
    life_lost = np.flatnonzero(game.life_loss)
    assert len(life_lost) >= 1
    for first, stop in absent_runs(objects.ball_visible):
        # longer absences: the ball fell past the paddle, and is served again after the life is lost
        assert stop - first <= 3 or any(first <= t <= stop for t in life_lost), (first, stop)


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_positions_follow_the_emulator(game_name):
    """Centres are a linear function of the emulator's own positions, within a pixel or so."""
    game = play(game_name)
    objects = find_objects(game_name, game.frames)
    ball_x, ball_y, paddle = RAM[game_name]
    seen = objects.ball_visible & (game.rewards == 0)  # a scoring frame has the ball out of the court
    for column, address in ((0, ball_x), (1, ball_y)):
        fit = np.polyfit(game.ram[seen, address], objects.ball_xy[seen, column], 1)
        residual = objects.ball_xy[seen, column] - np.polyval(fit, game.ram[seen, address])
        assert np.abs(residual).max() < 1.5, (column, np.abs(residual).max())
    axis = PADDLE_AXIS[game_name]
    fit = np.polyfit(game.ram[:, paddle], objects.paddle_xy[:, axis], 1)
    assert np.abs(objects.paddle_xy[:, axis] - np.polyval(fit, game.ram[:, paddle])).max() < 3.5
    assert np.ptp(objects.paddle_xy[:, 1 - axis]) < 1.5  # the paddle keeps to its column (Pong) or row


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_positions_move_little_between_consecutive_frames(game_name):
    objects = find_objects(game_name, play(game_name).frames)
    both = objects.ball_visible[1:] & objects.ball_visible[:-1]
    ball_steps = np.linalg.norm(np.diff(objects.ball_xy, axis=0), axis=1)[both]
    assert both.sum() > 250 and ball_steps.max() < 6 and np.median(ball_steps) > 1  # the ball flies, smoothly
    paddle_steps = np.linalg.norm(np.diff(objects.paddle_xy, axis=0), axis=1)
    assert paddle_steps.max() < 12 and (paddle_steps > 0.5).mean() > 0.2  # the paddle moves, no jumps


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_a_ball_painted_over_is_gone_and_the_paddle_stays(game_name):
    frames = play(game_name).frames
    objects = find_objects(game_name, frames)
    x, y = objects.ball_xy.T
    middle = objects.ball_visible & (x > 12) & (x < 50) & (y > 14) & (y < 54)  # away from bars, bricks, paddles
    picked = np.flatnonzero(middle)[::10]
    assert len(picked) >= 10
    painted = frames[picked].copy()
    background = (144, 72, 17) if game_name == "Pong" else (0, 0, 0)
    for frame, (bx, by) in zip(painted, np.round(objects.ball_xy[picked]).astype(int), strict=True):
        frame[by - 2:by + 3, bx - 2:bx + 3] = background
    after = find_objects(game_name, painted)
    assert not after.ball_visible.any() and np.isnan(after.ball_xy).all()
    assert after.paddle_visible.all()
    np.testing.assert_allclose(after.paddle_xy, objects.paddle_xy[picked])


def test_specks_of_noise_are_no_ball_and_mush_shows_nothing():
    """Small noise over a frame without a ball (a dream's) makes no ball and does not move the paddle; a frame
    of random colours, though specks of it have the ball's or the paddle's colour, shows neither."""
    game = play("Pong")
    rng = np.random.default_rng(0)
    frames = game.frames[find_objects("Pong", game.frames).ball_visible == 0][:20]
    noisy = np.clip(frames + rng.normal(0, 3, frames.shape), 0, 255).astype(np.uint8)
    clean, objects = find_objects("Pong", frames), find_objects("Pong", noisy)
    assert not objects.ball_visible.any()
    assert np.abs(objects.paddle_xy - clean.paddle_xy).max() < 0.5
    for game_name in OBJECT_GAMES:
        mush = find_objects(game_name, rng.integers(0, 256, (20, 64, 64, 3), dtype=np.uint8))
        assert not (mush.ball_visible.any() or mush.paddle_visible.any())


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_real_play_shows_one_ball_at_most_and_painted_copies_are_counted(game_name):
    """The game draws one ball; copies of it painted elsewhere in the court (a drifting dream's extra balls) are
    counted, a ball and the pixels it blends into are one, and frames of mush show none."""
    game = play(game_name)
    counts = count_balls(game_name, game.frames)
    seen = find_objects(game_name, game.frames)
    assert (counts <= 1).all() and ((counts == 1) == seen.ball_visible).mean() > 0.99
    frames = game.frames[seen.ball_visible][:10].copy()
    x, y = np.round(seen.ball_xy[seen.ball_visible][:10]).astype(int).T
    for i in range(len(frames)):  # the ball's 3x3 neighbourhood copied 12 columns and 8 rows away
        dx, dy = (12 if x[i] < 32 else -12), (8 if y[i] < 40 else -8)
        frames[i, y[i] + dy - 1:y[i] + dy + 2, x[i] + dx - 1:x[i] + dx + 2] = \
            frames[i, y[i] - 1:y[i] + 2, x[i] - 1:x[i] + 2]
    assert (count_balls(game_name, frames) == 2).all()
    assert (count_balls(game_name, frames, most=1) == 1).all()
    rng = np.random.default_rng(0)
    assert not count_balls(game_name, rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)).any()
    with pytest.raises(ValueError, match="most must be >= 1"):
        count_balls(game_name, frames, most=0)


# A bar's edge a dream draws a little low or soft: (row, columns, the bar's colour) next to Pong's top wall and above
# Breakout's paddle
BAR_EDGE = {"Pong": (10, slice(20, 32), np.array([236, 236, 236])),
            "Breakout": (56, slice(8, 20), np.array([200, 72, 72]))}


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_a_bar_edge_drawn_along_a_row_is_no_ball(game_name):
    """A streak of partial colour along a row, wider than any ball, is neither taken for the ball nor counted."""
    game = play(game_name)
    seen = find_objects(game_name, game.frames)
    row, cols, colour = BAR_EDGE[game_name]
    far = np.abs(seen.ball_xy[:, 1] - row) > 4
    with_ball = np.flatnonzero(seen.ball_visible & far)[:10]
    without = np.flatnonzero(~seen.ball_visible)[:10]
    assert len(with_ball) == 10 and len(without) > 0
    frames = game.frames[np.concatenate([with_ball, without])].copy()
    streak = frames[:, row, cols].astype(np.float32)
    frames[:, row, cols] = np.round(streak + 0.5 * (colour - streak)).astype(np.uint8)  # more than a ball's worth
    found = find_objects(game_name, frames)
    assert found.ball_visible[:10].all() and not found.ball_visible[10:].any()
    np.testing.assert_allclose(found.ball_xy[:10], seen.ball_xy[with_ball], atol=1e-9)
    assert (count_balls(game_name, frames) == np.r_[np.ones(10), np.zeros(len(without))]).all()


# rows where each game draws a wall all across the frame, and the wall's colour
WALL_ROWS = {"Pong": (slice(8, 10), 2 * 64 / (6 * 64), np.array([236, 236, 236])),
             "Breakout": (slice(6, 9), 3 * 64 / (3 * 64 + 2 * 2 * 47), np.array([142, 142, 142]))}


@pytest.mark.parametrize("game_name", OBJECT_GAMES)
def test_the_court_is_kept_in_real_play_and_a_wall_painted_over_is_missed(game_name):
    game = play(game_name)
    assert (court_kept(game_name, game.frames) == 1.0).all()
    rows, share, colour = WALL_ROWS[game_name]
    frames = game.frames[:5].copy()
    frames[:, rows] = game.frames[0, 30, 32]  # the top wall painted with what lies below it
    np.testing.assert_allclose(court_kept(game_name, frames), 1.0 - share)
    frames[:, rows] = np.round(0.9 * colour + 0.1 * game.frames[0, 30, 32])  # a wall a little off its colour holds
    assert (court_kept(game_name, frames) == 1.0).all()


def test_bad_games_and_frames_are_refused():
    with pytest.raises(ValueError, match="supported games are Breakout, Pong"):
        find_objects("Seaquest", np.zeros((1, 64, 64, 3), np.uint8))
    assert object_game("ALE/Pong-v5") == "Pong"
    with pytest.raises(ValueError, match=r"uint8 of shape \(n, 64, 64, 3\), got float32 of shape \(64, 64, 3\)"):
        find_objects("Pong", np.zeros((64, 64, 3), np.float32))
    empty = find_objects("Breakout", np.zeros((0, 64, 64, 3), np.uint8))
    assert len(empty) == 0 and empty.ball_xy.shape == (0, 2)


def test_pongs_opponent_paddle_is_one_piece_in_real_play_and_a_painted_copy_makes_two():
    frames = play("Pong").frames
    paddle = find_opponent_paddle(frames)
    assert (paddle.rows >= 3).mean() >= 0.8  # seen, but for moments half under a bar
    # one piece; two for a frame or so where the max over skipped frames catches it jumping after a point
    assert (paddle.pieces >= 1).sum() == (paddle.rows > 0).sum() and (paddle.pieces >= 2).mean() <= 0.01
    shown = np.flatnonzero(paddle.rows >= 5)[0]
    frame = frames[shown].copy()
    top = int(round(paddle.centre_y[shown])) - 2
    copy_top = top + 20 if top < 30 else top - 20
    frame[copy_top:copy_top + 5, 5:10] = frame[top:top + 5, 5:10]  # the paddle drawn a second time
    twice = find_opponent_paddle(frame[None])
    assert twice.pieces[0] == 2 and twice.rows[0] == 2 * paddle.rows[shown]
    frame[10:60, 5:10] = frames[shown, 30, 32]  # painted over with the court
    gone = find_opponent_paddle(frame[None])
    assert gone.pieces[0] == gone.rows[0] == 0 and np.isnan(gone.centre_y[0])
