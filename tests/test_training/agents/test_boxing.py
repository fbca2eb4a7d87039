"""training.data.objects: the boxers read from Boxing's frames, and the chaser that plays from them."""

import numpy as np
import pytest

from gym_diamond.atari import make_atari_env
from training.agents.rollouts import default_policies, make_policy
from training.data.objects import find_boxers
from training.data.scripted import BoxingChaser

GREEN = np.array([110, 156, 66], np.uint8)


@pytest.fixture(scope="module")
def boxing_frames():
    env = make_atari_env("Boxing")
    obs, _ = env.reset(seed=0)
    frames = [obs]
    rng = np.random.default_rng(0)
    for _ in range(60):
        obs, *_ = env.step(int(rng.integers(18)))
        frames.append(obs)
    env.close()
    return np.stack(frames)


def test_both_boxers_are_found_where_the_bout_starts(boxing_frames):
    boxers = find_boxers(boxing_frames)
    assert boxers.player_visible.all() and boxers.opponent_visible.all()
    first = find_boxers(boxing_frames[0])
    assert first.player_xy[0, 0] < 32 < first.opponent_xy[0, 0]  # white starts on the left, black on the right
    inside = np.concatenate([boxers.player_xy, boxers.opponent_xy])
    assert (inside[:, 0] > 11).all() and (inside[:, 0] < 53).all() and (inside[:, 1] > 9).all()
    # a frame whose white boxer is painted over (the score digits above the ring stay) shows no player
    painted = boxing_frames[:1].copy()
    ring = painted[:, 9:56, 11:53]
    ring[np.linalg.norm(ring.astype(float) - 214, axis=-1) < 60] = GREEN
    gone = find_boxers(painted)
    assert not gone.player_visible[0] and np.isnan(gone.player_xy[0]).all() and gone.opponent_visible[0]


def scene(player_xy, opponent_xy):
    """A green ring with a 5x5 white and a 5x5 black square centred at the given (x, y)."""
    frame = np.tile(GREEN, (64, 64, 1))
    for (x, y), colour in ((player_xy, 214), (opponent_xy, 0)):
        frame[y - 2:y + 3, x - 2:x + 3] = colour
    return frame


def test_the_chaser_walks_in_then_punches():
    chaser = BoxingChaser(seed=0)
    far, near, above = scene((15, 30), (45, 30)), scene((30, 30), (40, 30)), scene((30, 20), (40, 40))
    boxers = find_boxers(np.stack([far, near]))
    assert boxers.player_xy[0].tolist() == [15, 30] and boxers.opponent_xy[1].tolist() == [40, 30]
    actions = chaser.act(np.stack([far, near, above]))
    # far: RIGHT; near (10 px, on its row): RIGHTFIRE, closing to 8 px while punching; above: DOWNRIGHT, no punch
    assert actions.tolist() == [3, 11, 8]
    assert BoxingChaser(epsilon=1.0, seed=0).act(np.stack([far] * 200)).std() > 0  # epsilon 1: random
    with pytest.raises(ValueError, match="18 actions"):
        BoxingChaser(6)


def test_boxing_is_judged_with_the_chaser():
    assert default_policies("Boxing") == ("random", "chaser", "chaser-eps0.5")
    assert default_policies("Pong")[1] == "follower" and default_policies("Seaquest") == ("random",)
    assert isinstance(make_policy("chaser-eps0.5", "Boxing", 18), BoxingChaser)
    assert make_policy("chaser-eps0.5", "Boxing", 18).epsilon == 0.5
    with pytest.raises(ValueError, match="Boxing only"):
        make_policy("chaser", "Pong", 6)


def test_the_object_gate_judges_both_boxers(boxing_frames):
    from training.fidelity.measures import object_agreement
    from training.gates import judge_objects, judged_objects

    starts = np.arange(0, 40, 4)
    context = np.stack([boxing_frames[s:s + 4] for s in starts])
    real = np.stack([boxing_frames[s + 4:s + 9] for s in starts])
    assert judged_objects("Boxing") == ("player", "opponent") and judged_objects("Pong") == ("ball",)

    def lines(predicted):
        agreement = object_agreement("Boxing", context, real, predicted, horizons=(1, 5))
        return {h: agreement.line(h) for h in (1, 5)}

    faithful = lines(real)
    assert faithful[5]["player_real"] == len(starts) and faithful[5]["opponent_within_2px_model"] == 1.0
    assert judge_objects(faithful, objects=("player", "opponent"))["passed"]
    painted = real.copy()
    ring = painted[:, :, 9:56, 11:53]
    ring[np.linalg.norm(ring.astype(float) - 214, axis=-1) < 60] = GREEN  # a dream that lost the white boxer
    verdict = judge_objects(lines(painted), objects=("player", "opponent"))
    assert not verdict["passed"]
    assert any(f.startswith("1 steps: player shown in 0.00") for f in verdict["failed"])
    assert not any("opponent" in f for f in verdict["failed"])
    frozen = np.repeat(context[:, -1:], 5, axis=1)  # a dream that stands still fails where the boxers moved
    assert not judge_objects(lines(frozen), objects=("player", "opponent"))["passed"]
