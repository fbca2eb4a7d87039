"""training.data.minari_format: our episode datasets to Minari and back, by folder and by dataset id, losslessly."""

import json
import sys

import numpy as np
import pytest

minari = pytest.importorskip("minari")
pytest.importorskip("h5py")

from gymnasium import spaces  # noqa: E402
from minari.data_collector.episode_buffer import EpisodeBuffer  # noqa: E402
from minari.dataset.minari_storage import MinariStorage  # noqa: E402

from training.data.dataset import Episode, EpisodeDataset  # noqa: E402
from training.data.minari_format import from_minari, to_minari  # noqa: E402

GAME = "Breakout"


def _episode(rng, T, *, terminated=False, truncated=False, life_loss_at=()):
    rewards = rng.choice(np.array([-1.0, 0.0, 1.0], dtype=np.float32), T)
    rewards[T // 2] = 0.5
    life_loss = np.zeros(T, dtype=bool)
    life_loss[list(life_loss_at)] = True
    return Episode(frames=rng.integers(0, 256, (T + 1, 64, 64, 3), dtype=np.uint8),
                   actions=rng.integers(0, 5, T, dtype=np.int64), rewards=rewards,
                   terminated=np.arange(T) == T - 1 if terminated else np.zeros(T, dtype=bool),
                   truncated=np.arange(T) == T - 1 if truncated else np.zeros(T, dtype=bool),
                   life_loss=life_loss)


@pytest.fixture
def ours(tmp_path):
    """3 episodes of different lengths: one terminated, one truncated, one cut short; random (JPEG-hostile) frames."""
    rng = np.random.default_rng(0)
    dataset = EpisodeDataset(tmp_path / "ours", game=GAME)
    dataset.append(_episode(rng, 7, terminated=True, life_loss_at=(2, 6)))
    dataset.append(_episode(rng, 12, truncated=True, life_loss_at=(0,)))
    dataset.append(_episode(rng, 4))
    return dataset


def assert_same_dataset(a: EpisodeDataset, b: EpisodeDataset):
    assert b.game == a.game
    assert len(b) == len(a) and b.lengths.tolist() == a.lengths.tolist()  # count and boundaries
    for i in range(len(a)):
        x, y = a.episode(i), b.episode(i)
        assert y.frames.tobytes() == x.frames.tobytes() and y.frames.shape == x.frames.shape
        for name, value in x.arrays().items():
            other = getattr(y, name)
            assert other.dtype == value.dtype, (i, name)
            np.testing.assert_array_equal(other, value, err_msg=f"episode {i}: {name}")


def test_round_trip_through_a_folder_is_exact(ours, tmp_path):
    with pytest.raises(ValueError, match="num_actions"):
        to_minari(ours, tmp_path / "minari")
    assert not (tmp_path / "minari").exists()

    path = to_minari(ours, tmp_path / "minari", num_actions=5)
    assert path == tmp_path / "minari"
    metadata = json.loads((path / "metadata.json").read_text())
    assert metadata["jpeg_encoding"] is False and metadata["gym_diamond"]["game"] == GAME
    assert metadata["total_episodes"] == 3 and metadata["total_steps"] == 7 + 12 + 4

    loaded = minari.MinariDataset(path)  # Minari itself reads it, with our spaces and episodes
    assert loaded.action_space == spaces.Discrete(5) and loaded.observation_space.shape == (64, 64, 3)
    first = loaded[0]
    np.testing.assert_array_equal(first.observations, ours.episode(0).frames)
    assert first.actions.dtype == np.int64 and first.rewards.dtype == np.float32
    assert first.infos["life_loss"].tolist() == [False] + ours.episode(0).life_loss.tolist()

    back = from_minari(path, tmp_path / "back")
    assert_same_dataset(ours, back)
    assert_same_dataset(ours, EpisodeDataset(tmp_path / "back"))  # as stored on disk
    assert 0.5 in back.episode(1).rewards and back.episode(0).terminated[-1] and back.episode(1).truncated[-1]

    with pytest.raises(ValueError, match="already"):
        to_minari(ours, str(path), num_actions=5)
    with pytest.raises(ValueError, match="already holds"):
        from_minari(path, tmp_path / "back")
    with pytest.raises(ValueError, match="actions"):  # an action outside num_actions
        to_minari(ours, tmp_path / "too_few", num_actions=3)
    assert not (tmp_path / "too_few").exists()


def test_round_trip_through_a_dataset_id(ours, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "datasets"))
    path = to_minari(ours, "diamond/breakout-v0", num_actions=5)
    assert path == tmp_path / "datasets" / "diamond" / "breakout-v0" / "data"
    assert minari.load_dataset("diamond/breakout-v0").total_steps == 23
    assert "diamond/breakout-v0" in minari.list_local_datasets()

    back = from_minari("diamond/breakout-v0", tmp_path / "back")
    assert_same_dataset(ours, back)
    assert_same_dataset(ours, from_minari(tmp_path / "datasets" / "diamond" / "breakout-v0", tmp_path / "back2"))
    with pytest.raises(ValueError, match="records game"):
        from_minari("diamond/breakout-v0", tmp_path / "back3", game="Pong")
    with pytest.raises(ValueError, match="already exists"):
        to_minari(ours, "diamond/breakout-v0", num_actions=5)


def _foreign(tmp_path, name, observation_space, action_space, observations, actions, infos=None):
    """A Minari dataset not written by to_minari: one episode of 3 steps, at tmp_path / name."""
    storage = MinariStorage.new(tmp_path / name, observation_space=observation_space, action_space=action_space,
                                jpeg_encoding=False)
    storage.update_metadata({"dataset_id": f"{name}-v0", "minari_version": minari.__version__})
    storage.update_episodes([EpisodeBuffer(observations=observations, actions=actions,
                                           rewards=np.array([0.0, 1.0, 0.25], dtype=np.float32),
                                           terminations=np.array([False, False, True]),
                                           truncations=np.zeros(3, dtype=bool), infos=infos)])
    return tmp_path / name


def test_a_dict_observation_with_an_image_and_no_life_loss(tmp_path):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (4, 32, 40, 3), dtype=np.uint8)
    space = spaces.Dict({"image": spaces.Box(0, 255, (32, 40, 3), np.uint8), "lives": spaces.Discrete(6)})
    path = _foreign(tmp_path, "dict", space, spaces.Discrete(4, start=1),
                    {"image": frames, "lives": np.array([3, 3, 2, 2])}, np.array([1, 4, 2]))
    back = from_minari(path, tmp_path / "back")
    assert back.game == "dict-v0"  # no game recorded, no env spec: the dataset id
    episode = back.episode(0)
    np.testing.assert_array_equal(episode.frames, frames)
    assert episode.actions.tolist() == [0, 3, 1]  # Discrete(4, start=1): ours count from 0
    assert episode.rewards.tolist() == [0.0, 1.0, 0.25] and episode.terminated.tolist() == [False, False, True]
    assert not episode.life_loss.any()
    assert from_minari(path, tmp_path / "named", game="Pong").game == "Pong"


@pytest.mark.parametrize("kind", ["continuous actions", "vector observations"])
def test_other_spaces_are_refused_naming_the_space(tmp_path, kind):
    frames = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    if kind == "continuous actions":
        path = _foreign(tmp_path, "box", spaces.Box(0, 255, (32, 32, 3), np.uint8),
                        spaces.Box(-1.0, 1.0, (2,), np.float32), frames, np.zeros((3, 2), dtype=np.float32))
        match = r"actions must be Discrete, got action space Box\(-1\.0, 1\.0, \(2,\), float32\)"
    else:
        path = _foreign(tmp_path, "vector", spaces.Box(-1.0, 1.0, (4,), np.float32), spaces.Discrete(2),
                        np.zeros((4, 4), dtype=np.float32), np.zeros(3, dtype=np.int64))
        match = r"got observation space Box\(-1\.0, 1\.0, \(4,\), float32\)"
    with pytest.raises(ValueError, match=match):
        from_minari(path, tmp_path / "back")
    assert not (tmp_path / "back").exists()


def test_missing_minari_says_how_to_install_it(ours, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "minari", None)
    with pytest.raises(ImportError, match=r'pip install "gym-diamond\[minari\]"'):
        to_minari(ours, tmp_path / "minari", num_actions=5)
    with pytest.raises(ImportError, match=r'pip install "gym-diamond\[minari\]"'):
        from_minari(tmp_path / "minari", tmp_path / "back")


def test_a_minari_that_cannot_turn_jpeg_off_is_caught(ours, tmp_path, monkeypatch):
    original = MinariStorage.new

    def new_without_the_flag(data_path, observation_space=None, action_space=None, env_spec=None, data_format="hdf5"):
        return original(data_path, observation_space, action_space, env_spec, data_format)  # JPEG for images

    monkeypatch.setattr(MinariStorage, "new", staticmethod(new_without_the_flag))
    with pytest.raises(RuntimeError, match="JPEG"):
        to_minari(ours, tmp_path / "minari", num_actions=5)
    assert not (tmp_path / "minari").exists()


def test_the_action_names_of_another_environment_go_both_ways(tmp_path):
    rng = np.random.default_rng(1)
    names = ["left", "right", "forward", "pickup", "drop"]
    ours = EpisodeDataset(tmp_path / "ours", game="MiniGrid-Empty-5x5-v0", action_meanings=names)
    ours.append(_episode(rng, 5, terminated=True))
    path = to_minari(ours, tmp_path / "minari")  # the action count comes from the names
    back = from_minari(path, tmp_path / "back")
    assert back.action_meanings == names and back.game == "MiniGrid-Empty-5x5-v0"
    assert_same_dataset(ours, back)


def test_training_reads_a_minari_dataset_by_id_or_folder_and_our_own_as_it_is(ours, tmp_path, monkeypatch):
    from training.data.minari_format import is_minari_dataset, local_episodes

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari-root"))
    folder = to_minari(ours, tmp_path / "as-folder", num_actions=5)
    to_minari(ours, "diamond/breakout-v1", num_actions=5)
    assert is_minari_dataset(folder) and is_minari_dataset("diamond/breakout-v1")
    assert not is_minari_dataset(ours.root) and not is_minari_dataset("diamond/absent-v0")
    assert local_episodes(ours.root, tmp_path / "unused") == ours.root  # ours: read in place, nothing converted
    for source, converted in ((folder, tmp_path / "c1"), ("diamond/breakout-v1", tmp_path / "c2")):
        assert local_episodes(source, converted) == converted
        assert_same_dataset(ours, EpisodeDataset(converted))
        assert local_episodes(source, converted) == converted  # a resumed run reuses the conversion
