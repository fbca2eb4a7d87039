"""training.data.dataset: episodes on disk, atomic appends, segment sampling with padding and recency weights."""

import json
import shutil

import numpy as np
import pytest

from training.data.dataset import DIAMOND_SAMPLE_WEIGHTS, Episode, EpisodeDataset
from training.data.sampling import BatchSampler


def make_episode(T, base=1, shape=(2, 2, 3), end=True, life_loss_at_end=False):
    """Frame j is filled with base + j; action t is 10 * base + t; reward t is t + 0.5."""
    frames = (base + np.arange(T + 1, dtype=np.uint8))[:, None, None, None] * np.ones(shape, np.uint8)
    terminated = np.zeros(T, bool)
    terminated[-1] = end
    life_loss = np.zeros(T, bool)
    life_loss[-1] = life_loss_at_end
    return Episode(frames=frames, actions=10 * base + np.arange(T, dtype=np.int64),
                   rewards=np.arange(T, dtype=np.float32) + 0.5, terminated=terminated,
                   truncated=np.zeros(T, bool), life_loss=life_loss)


def random_episode(rng, T):
    return Episode(frames=rng.integers(0, 256, (T + 1, 64, 64, 3), dtype=np.uint8),
                   actions=rng.integers(0, 6, T), rewards=rng.normal(size=T).astype(np.float32),
                   terminated=np.arange(T) == T - 1, truncated=np.zeros(T, bool),
                   life_loss=rng.random(T) < 0.2)


def assert_same(a: Episode, b: Episode):
    for name, value in a.arrays().items():
        other = getattr(b, name)
        assert other.dtype == value.dtype, name
        np.testing.assert_array_equal(other, value, err_msg=name)


def test_episode_validation():
    ep = make_episode(3)
    assert len(ep) == 3 and ep.episode_return == 0.5 + 1.5 + 2.5
    good = ep.arrays()
    with pytest.raises(ValueError, match="frames must have dtype uint8"):
        Episode(**{**good, "frames": good["frames"].astype(np.float32)})
    with pytest.raises(ValueError, match="actions must have dtype int64"):
        Episode(**{**good, "actions": good["actions"].astype(np.int32)})
    with pytest.raises(ValueError, match=r"rewards must have shape \(3,\)"):
        Episode(**{**good, "rewards": good["rewards"][:2]})
    with pytest.raises(ValueError, match="frames must have shape"):
        Episode(**{**good, "frames": good["frames"][:, 0]})
    with pytest.raises(ValueError, match="at least one transition"):
        Episode(frames=good["frames"][:1], **{k: v[:0] for k, v in good.items() if k != "frames"})
    with pytest.raises(ValueError, match="only be set on the last"):
        Episode(**{**good, "terminated": np.array([True, False, True])})
    with pytest.raises(TypeError):
        Episode(**{**good, "actions": [0, 1, 2]})


def test_round_trip_and_reopen(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [random_episode(rng, T) for T in (5, 1, 12)]
    ds = EpisodeDataset(tmp_path / "data", game="Breakout")
    assert len(ds) == 0 and ds.num_steps == 0
    assert [ds.append(ep) for ep in episodes] == [0, 1, 2]
    assert len(ds) == 3 and ds.num_steps == 18
    index = json.loads((tmp_path / "data" / "index.json").read_text())
    assert index["game"] == "Breakout" and [e["length"] for e in index["episodes"]] == [5, 1, 12]
    again = EpisodeDataset(tmp_path / "data", game="breakout")  # same game, other spelling
    assert len(again) == 3 and again.num_steps == 18 and again.game == "Breakout"
    np.testing.assert_array_equal(again.lengths, [5, 1, 12])
    for i, ep in enumerate(episodes):
        assert_same(ep, again.episode(i))
    assert_same(episodes[-1], again.episode(-1))
    with pytest.raises(IndexError):
        again.episode(3)
    assert EpisodeDataset(tmp_path / "data").game == "Breakout"  # None accepts any game


def test_game_mismatch(tmp_path):
    EpisodeDataset(tmp_path, game="Pong").append(make_episode(2))
    with pytest.raises(ValueError, match="'Pong'.*not 'Breakout'"):
        EpisodeDataset(tmp_path, game="Breakout")


def test_frame_shape_mismatch(tmp_path):
    ds = EpisodeDataset(tmp_path)
    ds.append(make_episode(2))
    with pytest.raises(ValueError, match="frames are"):
        ds.append(make_episode(2, shape=(3, 3, 3)))


def test_interrupted_appends(tmp_path):
    ds = EpisodeDataset(tmp_path, game="Pong", compress=False)
    ds.append(make_episode(2, base=1))
    ds.append(make_episode(3, base=2))
    # a run killed while writing: half-written temporary files are never read
    (tmp_path / "episodes" / "000002.npz.tmp").write_bytes(b"garbage")
    (tmp_path / "index.json.tmp").write_bytes(b"{garbage")
    ds = EpisodeDataset(tmp_path, game="Pong")
    assert len(ds) == 2 and ds.num_steps == 5
    assert ds.append(make_episode(4, base=3)) == 2
    ds = EpisodeDataset(tmp_path, game="Pong")
    assert len(ds) == 3 and ds.episode(2).frames[0, 0, 0, 0] == 3
    # a run killed between the episode's rename and the index's: the complete episode is recovered
    shutil.copy(tmp_path / "episodes" / "000000.npz", tmp_path / "episodes" / "000003.npz")
    ds = EpisodeDataset(tmp_path, game="Pong")
    assert len(ds) == 4 and ds.num_steps == 11
    assert_same(ds.episode(0), ds.episode(3))
    assert len(EpisodeDataset(tmp_path)) == 4  # and the index now lists it
    # an unreadable file where the next episode goes is ignored, then overwritten
    (tmp_path / "episodes" / "000004.npz").write_bytes(b"not a zip")
    ds = EpisodeDataset(tmp_path, game="Pong")
    assert len(ds) == 4
    assert ds.append(make_episode(1, base=9)) == 4
    assert EpisodeDataset(tmp_path).episode(4).actions.tolist() == [90]


def test_lru_cache_reloads(tmp_path):
    ds = EpisodeDataset(tmp_path, cache_bytes=300)  # room for about one small episode
    episodes = [make_episode(3, base=b) for b in (1, 5, 9)]
    for ep in episodes:
        ds.append(ep)
    for i in [0, 1, 2, 0, 2, 1]:
        assert_same(episodes[i], ds.episode(i))
    assert ds._cached_bytes <= 300


@pytest.fixture
def small(tmp_path):
    """Episode 0: 3 transitions, frames 1..4; episode 1: 2 transitions, frames 20..22 (life loss at the end)."""
    ds = EpisodeDataset(tmp_path)
    ds.append(make_episode(3, base=1))
    ds.append(make_episode(2, base=20, life_loss_at_end=True))
    return ds


def test_segments_padding_exact(small):
    seg = small.get_segments([0, 0, 1, 0], [-2, 1, 0, 0], 4)
    assert seg.frames.shape == (4, 5, 2, 2, 3) and seg.frames.dtype == np.uint8
    F, T = False, True
    np.testing.assert_array_equal(seg.frames[:, :, 0, 0, 0], [[0, 0, 1, 2, 3],
                                                              [2, 3, 4, 0, 0],
                                                              [20, 21, 22, 0, 0],
                                                              [1, 2, 3, 4, 0]])
    assert (seg.frames == seg.frames[:, :, :1, :1, :1]).all()  # whole frames, not just one pixel
    np.testing.assert_array_equal(seg.mask, [[F, F, T, T], [T, T, F, F], [T, T, F, F], [T, T, T, F]])
    np.testing.assert_array_equal(seg.actions, [[0, 0, 10, 11], [11, 12, 0, 0], [200, 201, 0, 0], [10, 11, 12, 0]])
    assert seg.actions.dtype == np.int64 and seg.rewards.dtype == np.float32
    np.testing.assert_array_equal(seg.rewards, [[0, 0, .5, 1.5], [1.5, 2.5, 0, 0], [.5, 1.5, 0, 0], [.5, 1.5, 2.5, 0]])
    np.testing.assert_array_equal(seg.terminated, [[F, F, F, F], [F, T, F, F], [F, T, F, F], [F, F, T, F]])
    np.testing.assert_array_equal(seg.life_loss, [[F, F, F, F], [F, F, F, F], [F, T, F, F], [F, F, F, F]])
    np.testing.assert_array_equal(seg.truncated, False)
    np.testing.assert_array_equal(seg.episode_ids, [0, 0, 1, 0])
    np.testing.assert_array_equal(seg.starts, [-2, 1, 0, 0])


def test_segments_frame_mask_and_diamond_end_padding(tmp_path):
    ds = EpisodeDataset(tmp_path)
    ds.append(make_episode(3, base=1))  # terminated: DIAMOND keeps its final frame
    ds.append(make_episode(2, base=20, end=False))  # cut short: DIAMOND has no frame after its last action
    seg = ds.get_segments([0, 1], [1, 0], 3)
    F, T = False, True
    np.testing.assert_array_equal(seg.frame_mask, [[T, T, T, F], [T, T, T, F]])
    padded = ds.get_segments([0, 1], [1, 0], 3, pad_unterminated_end=True)
    np.testing.assert_array_equal(padded.frame_mask, [[T, T, T, F], [T, T, F, F]])
    np.testing.assert_array_equal(padded.frames[:, :, 0, 0, 0], [[2, 3, 4, 0], [20, 21, 0, 0]])
    np.testing.assert_array_equal(padded.mask, seg.mask)  # the transition out of the last frame still counts


def _exact_position_probabilities(T: int, num_frames: int, beyond_end: bool) -> dict[int, float]:
    """P(start) for one episode of T acting frames, enumerated from DIAMOND's BatchSampler.sample."""
    probs: dict[int, float] = {}
    for t in range(T):
        for u in range(num_frames):
            start = t - u if beyond_end else min(T, t + 1 + u) - num_frames
            probs[start] = probs.get(start, 0.0) + 1 / (T * num_frames)
    return probs


@pytest.mark.parametrize("beyond_end", [False, True])
def test_positions_follow_diamond_batch_sampler(tmp_path, beyond_end):
    ds = EpisodeDataset(tmp_path)
    ds.append(make_episode(7, base=1))
    n = 60000
    ids, starts = BatchSampler(ds).sample_positions(n, 4, np.random.default_rng(0), beyond_end=beyond_end)
    assert (ids == 0).all()
    exact = _exact_position_probabilities(7, 4, beyond_end)
    values, counts = np.unique(starts, return_counts=True)
    assert set(values.tolist()) == set(exact)
    for value, count in zip(values, counts, strict=True):
        assert abs(count / n - exact[value]) < 4 * (exact[value] / n) ** 0.5 + 1e-3, (value, count / n, exact[value])
    if not beyond_end:
        assert (starts + 4 <= 7).all()  # the frame after the last action is never a frame of the segment
        # segments are cut near the end more often (the last window 10 ways of 28), and may start with padding
        assert exact[3] == pytest.approx(10 / 28) and exact[0] == pytest.approx(4 / 28)
        assert exact[-3] == pytest.approx(1 / 28)


def test_sample_segments_and_their_draws(small):
    seg = BatchSampler(small).sample_segments(2000, 4, np.random.default_rng(1), beyond_end=True)
    assert seg.frames.shape == (2000, 4, 2, 2, 3) and seg.mask.shape == (2000, 3)
    assert (~seg.mask[:, 0]).any() and (~seg.mask[:, -1]).any()
    assert seg.frame_mask.any(axis=1).all()
    again = small.get_segments(seg.episode_ids, seg.starts, 3)
    np.testing.assert_array_equal(again.frames, seg.frames)
    # the same seed, the same draws
    same = BatchSampler(small).sample_segments(2000, 4, np.random.default_rng(1), beyond_end=True)
    np.testing.assert_array_equal(same.starts, seg.starts)
    np.testing.assert_array_equal(same.episode_ids, seg.episode_ids)
    assert seg.episode_ids.tolist().count(0) > 1000  # 3 of 5 acting frames: p = 0.6
    only = BatchSampler(small).sample_segments(50, 2, np.random.default_rng(2), episode_ids=[1])
    assert (only.episode_ids == 1).all()
    with pytest.raises(ValueError):
        BatchSampler(small).sample_segments(4, 2, np.random.default_rng(0), episode_ids=[5])


def test_diamond_recency_groups(tmp_path):
    ds = EpisodeDataset(tmp_path)
    lengths = [4, 8, 4, 8, 4, 8, 2, 6, 5, 9]
    for T in lengths:
        ds.append(make_episode(T))
    w = BatchSampler(ds).episode_weights(sample_weights=DIAMOND_SAMPLE_WEIGHTS)
    # 10 episodes in 4 groups of 10 // 4 = 2, the newest taking the remainder (4); equal inside a group
    np.testing.assert_allclose(w, [0.05] * 6 + [0.7 / 4] * 4)
    np.testing.assert_allclose(BatchSampler(ds).episode_weights(), np.array(lengths) / sum(lengths))
    ids, _ = BatchSampler(ds).sample_positions(20000, 2, np.random.default_rng(0),
                                               sample_weights=DIAMOND_SAMPLE_WEIGHTS)
    assert abs(np.isin(ids, [6, 7, 8, 9]).mean() - 0.7) < 0.02
    assert abs((ids == 6).mean() - 0.175) < 0.02  # the short episode as likely as its long neighbours
    only_train = BatchSampler(ds).episode_weights([0, 1, 2, 3, 9], sample_weights=DIAMOND_SAMPLE_WEIGHTS)
    np.testing.assert_allclose(only_train, [0.1, 0.1, 0.1, 0.35, 0.35])
    with pytest.raises(ValueError, match="sum to 1"):
        BatchSampler(ds).episode_weights(sample_weights=(0.5, 0.6))


def test_recency_groups_need_as_many_episodes_as_weights(small):
    np.testing.assert_allclose(BatchSampler(small).episode_weights(sample_weights=DIAMOND_SAMPLE_WEIGHTS), [0.6, 0.4])


def test_split(tmp_path):
    ds = EpisodeDataset(tmp_path)
    for _ in range(40):
        ds.append(make_episode(1))
    train, test = ds.split(0.25, seed=3)
    assert train.dtype == np.int64 and sorted([*train, *test]) == list(range(40))
    assert 4 <= len(test) <= 18
    t2, s2 = ds.split(0.25, seed=3)
    np.testing.assert_array_equal(test, s2)
    assert not np.array_equal(ds.split(0.25, seed=4)[1], test)
    for _ in range(10):
        ds.append(make_episode(1))
    train3, test3 = ds.split(0.25, seed=3)  # old episodes keep their side as the dataset grows
    np.testing.assert_array_equal(test3[test3 < 40], test)
    assert len(ds.split(0.0)[1]) == 0
    two = EpisodeDataset(tmp_path / "two")
    two.append(make_episode(1))
    two.append(make_episode(1))
    assert [len(x) for x in two.split(0.01)] == [1, 1]
    with pytest.raises(ValueError):
        ds.split(1.0)


def test_empty_dataset_cannot_sample(tmp_path):
    with pytest.raises(ValueError, match="no episodes"):
        BatchSampler(EpisodeDataset(tmp_path)).sample_segments(2, 2, np.random.default_rng(0))


def test_ending_positions_hold_the_termination_of_terminated_episodes_only(tmp_path):
    ds = EpisodeDataset(tmp_path)
    ds.append(make_episode(30, base=1))  # terminated
    ds.append(make_episode(25, base=40, end=False))  # cut short: no termination to learn from
    ds.append(make_episode(12, base=80))  # terminated
    np.testing.assert_array_equal(ds.terminated_episodes(), [0, 2])
    np.testing.assert_array_equal(ds.terminated_episodes([1, 2]), [2])
    ids, starts = BatchSampler(ds).sample_ending_positions(400, 19, np.random.default_rng(0))
    seg = ds.get_segments(ids, starts, 18)
    assert set(ids.tolist()) == {0, 2}
    assert (seg.terminated.sum(1) == 1).all()  # every segment holds exactly one termination ...
    positions = np.flatnonzero(seg.terminated.reshape(-1)) % 18
    assert set(positions.tolist()) == set(range(18))  # ... at every position of the segment's transitions
    ids, starts = BatchSampler(ds).sample_ending_positions(400, 19, np.random.default_rng(0), lead_in=10)
    seg = ds.get_segments(ids, starts, 18)
    assert (seg.terminated.sum(1) == 1).all()
    positions = np.flatnonzero(seg.terminated.reshape(-1)) % 18
    assert set(positions.tolist()) == set(range(10, 18))  # with 10 transitions or more before it
    for lead_in in (-1, 18):
        with pytest.raises(ValueError, match="lead_in"):
            BatchSampler(ds).sample_ending_positions(4, 19, np.random.default_rng(0), lead_in=lead_in)
    ids, _ = BatchSampler(ds).sample_ending_positions(20, 19, np.random.default_rng(0), episode_ids=[0, 1])
    assert set(ids.tolist()) == {0}
    with pytest.raises(ValueError, match="no episode .* terminated"):
        BatchSampler(ds).sample_ending_positions(4, 19, np.random.default_rng(0), episode_ids=[1])
    ds.truncate(1)
    ds.append(make_episode(5, base=90, end=False))
    np.testing.assert_array_equal(ds.terminated_episodes(), [0])  # what truncate dropped is read again


def test_reward_positions_hold_a_rewarded_transition(tmp_path):
    ds = EpisodeDataset(tmp_path)
    rewarded = {0: [4, 20], 1: [], 2: [7]}
    for i, T in enumerate((30, 25, 12)):
        episode = make_episode(T, base=1 + 40 * i)
        episode.rewards[:] = 0
        episode.rewards[rewarded[i]] = [1.0, -1.0][: len(rewarded[i])]
        ds.append(episode)
    episodes, steps = ds.rewarded_steps()
    assert list(zip(episodes.tolist(), steps.tolist(), strict=True)) == [(0, 4), (0, 20), (2, 7)]
    ids, starts = BatchSampler(ds).sample_reward_positions(600, 19, np.random.default_rng(0))
    seg = ds.get_segments(ids, starts, 18, pad_unterminated_end=True)
    assert (np.abs(seg.rewards).sum(1) >= 1).all()  # every segment holds a rewarded transition ...
    positions = {(s - start) for i, start in zip(ids, starts, strict=True) for s in rewarded[i]
                 if 0 <= s - start < 18}
    assert positions == set(range(18))  # ... at every position of the segment's transitions
    ids, _ = BatchSampler(ds).sample_reward_positions(50, 19, np.random.default_rng(1), episode_ids=[1, 2])
    assert set(ids.tolist()) == {2}
    with pytest.raises(ValueError, match="no transition .* is rewarded"):
        BatchSampler(ds).sample_reward_positions(4, 19, np.random.default_rng(0), episode_ids=[1])


def test_an_episode_has_one_fingerprint_wherever_it_lies_and_another_for_one_changed_pixel(tmp_path):
    rng = np.random.default_rng(0)
    episodes = [random_episode(rng, T) for T in (3, 4, 5)]
    first = EpisodeDataset(tmp_path / "first")
    for episode in episodes:
        first.append(episode)
    again = EpisodeDataset(tmp_path / "again")  # the same episodes in another order, beside a new one
    for episode in [episodes[2], random_episode(rng, 4), episodes[0], episodes[1]]:
        again.append(episode)
    prints = first.fingerprints()
    assert len(set(prints)) == 3 and again.fingerprints([2, 3, 0]) == prints
    assert again.fingerprints([1])[0] not in prints
    changed = Episode(**{name: value.copy() for name, value in episodes[0].arrays().items()})
    changed.frames[2, 10, 20, 1] ^= 1
    assert changed.fingerprint() != prints[0]
    relabelled = Episode(**{name: value.copy() for name, value in episodes[0].arrays().items()})
    relabelled.rewards[1] += 1
    assert relabelled.fingerprint() != prints[0]
    # the index holds them; an index written before it did has them computed from the files, the same
    assert [e["fingerprint"] for e in json.loads((tmp_path / "first" / "index.json").read_text())["episodes"]] == prints
    index = json.loads((tmp_path / "first" / "index.json").read_text())
    for entry in index["episodes"]:
        del entry["fingerprint"]
    (tmp_path / "first" / "index.json").write_text(json.dumps(index))
    assert EpisodeDataset(tmp_path / "first").fingerprints() == prints
    first.truncate(2)  # a cut episode stored again, longer, under its id: the new content's fingerprint
    first.append(episodes[1])
    assert first.fingerprints() == [prints[0], prints[1], prints[1]]
