"""training.data.any_env: any Gymnasium env with image frames and discrete actions, collected as Atari is."""

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode

from gym_diamond.atari import resize_frame
from training.data.any_env import ImageFrames, env_action_meanings, make_env, make_vector_env
from training.data.collect import Collector
from training.data.dataset import EpisodeDataset
from training.data.policies import RandomAgent

MINIGRID = "MiniGrid-Empty-5x5-v0"


def test_resize_frame_is_area_interpolation():
    big = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    out = resize_frame(big, 64)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    # area interpolation: each output pixel is the mean of its 4x4 block (bilinear would take the middle 2x2 only)
    blocks = big.reshape(64, 4, 64, 4, 3).astype(np.float64).mean(axis=(1, 3))
    np.testing.assert_array_equal(out, np.rint(blocks))


def _minigrid_reference():
    from minigrid.wrappers import RGBImgObsWrapper

    return RGBImgObsWrapper(gym.make(MINIGRID, max_steps=10))


def test_minigrid_frames_are_the_resized_rgb_image():
    pytest.importorskip("minigrid")
    from minigrid.wrappers import RGBImgObsWrapper

    env = make_env(MINIGRID, wrappers=[RGBImgObsWrapper], max_steps=10)
    ref = _minigrid_reference()
    assert env.observation_space == spaces.Box(0, 255, (64, 64, 3), np.uint8)
    frame, _ = env.reset(seed=3)
    obs, _ = ref.reset(seed=3)
    assert obs["image"].shape != (64, 64, 3)  # a real resize (MiniGrid renders 8 pixels a tile)
    for action in [0, 2, 1, 2, 2, 5]:
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
        np.testing.assert_array_equal(frame, resize_frame(obs["image"], 64))
        frame, *_ = env.step(action)
        obs, *_ = ref.step(action)
    env.close()
    ref.close()
    with pytest.warns(UserWarning, match="RGBImgObsWrapper"):  # MiniGrid's raw 7x7 symbolic "image"
        make_env(MINIGRID).close()


def test_minigrid_collection(tmp_path):
    pytest.importorskip("minigrid")
    from minigrid.wrappers import RGBImgObsWrapper

    env = make_vector_env(MINIGRID, 2, seed=5, wrappers=[RGBImgObsWrapper], max_steps=10)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.single_observation_space.shape == (64, 64, 3)
    returned = []  # what the env itself returned, step by step
    step = env.step

    def recording_step(actions):
        out = step(actions)
        obs, rewards, terminated, truncated, infos = out
        finals = [infos["final_obs"][i] if terminated[i] or truncated[i] else None for i in range(2)]
        returned.append((np.array(actions), rewards.copy(), terminated.copy(), truncated.copy(), finals))
        return out

    env.step = recording_step
    dataset = EpisodeDataset(tmp_path, game=MINIGRID)
    stats = Collector(env, dataset, RandomAgent(7, seed=0)).collect(60)
    assert [e.unwrapped.np_random_seed for e in env.envs] == [5, 6]  # the first reset used seed + i

    expected, running = [], [[], []]
    for actions, rewards, terminated, truncated, finals in returned:
        for i in range(2):
            running[i].append((actions[i], rewards[i], terminated[i], truncated[i]))
            if terminated[i] or truncated[i]:
                expected.append((running[i], finals[i]))
                running[i] = []
    assert len(dataset) == len(expected) == stats.episodes_finished >= 4
    for k, (transitions, final) in enumerate(expected):
        episode = dataset.episode(k)
        actions, rewards, terminated, truncated = map(np.array, zip(*transitions, strict=True))
        np.testing.assert_array_equal(episode.actions, actions)
        np.testing.assert_allclose(episode.rewards, rewards)
        np.testing.assert_array_equal(episode.terminated, terminated)
        np.testing.assert_array_equal(episode.truncated, truncated)
        assert not episode.life_loss.any()
        assert len(episode) <= 10 and episode.frames.shape == (len(episode) + 1, 64, 64, 3)
        np.testing.assert_array_equal(episode.frames[-1], final)
    assert any(dataset.episode(k).truncated[-1] and len(dataset.episode(k)) == 10 for k in range(len(dataset)))
    env.close()


def test_minigrid_action_meanings():
    pytest.importorskip("minigrid")
    assert env_action_meanings(MINIGRID) == ["left", "right", "forward", "pickup", "drop", "toggle", "done"]


def test_action_meanings_fallback_and_ale():
    assert env_action_meanings("CartPole-v1") == ["ACTION_0", "ACTION_1"]
    import ale_py

    gym.register_envs(ale_py)
    assert env_action_meanings("ALE/Pong-v5")[:2] == ["NOOP", "FIRE"]


def test_render_frames_for_state_observations():
    env = make_env("CartPole-v1", observation="render")
    frame, _ = env.reset(seed=0)
    for _ in range(3):
        assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
        np.testing.assert_array_equal(frame, resize_frame(env.render(), 64))
        assert frame.min() < frame.max()  # a picture, not a blank
        frame, *_ = env.step(1)
    env.close()
    vec = make_vector_env("CartPole-v1", 2, observation="render", frame_size=32, seed=0)
    obs, _ = vec.reset()
    assert obs.shape == (2, 32, 32, 3) and obs.dtype == np.uint8
    vec.close()
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        ImageFrames(gym.make("CartPole-v1"), observation="render")


def test_state_observations_are_refused_without_render():
    space = gym.make("CartPole-v1").observation_space
    with pytest.raises(ValueError, match=re.escape(f"observation space {space} is not an RGB image")):
        make_env("CartPole-v1")
    with pytest.raises(ValueError, match="observation must be one of"):
        make_env("CartPole-v1", observation="pixels")


def test_continuous_actions_are_refused():
    with pytest.raises(ValueError, match=re.escape("continuous actions (Box(-2.0, 2.0, (1,), float32))")):
        make_env("Pendulum-v1", observation="render")
    with pytest.raises(ValueError, match="continuous actions"):
        env_action_meanings("Pendulum-v1")


class _TinyEnv(gym.Env):
    """An env with a given observation space, observing zeros."""

    def __init__(self, observation_space: spaces.Space) -> None:
        self.observation_space = observation_space
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def test_dict_without_image_is_refused():
    env = _TinyEnv(spaces.Dict({"pixels": spaces.Box(0, 255, (32, 32, 3), np.uint8),
                                "position": spaces.Box(-1, 1, (2,))}))
    with pytest.raises(ValueError, match=r"keys \['pixels', 'position'\] has no 'image' entry"):
        ImageFrames(env)


def test_dict_image_entry_and_channels():
    image = spaces.Box(0, 255, (32, 32, 3), np.uint8)
    env = ImageFrames(_TinyEnv(spaces.Dict({"image": image, "step": spaces.Discrete(5)})), size=16)
    frame, _ = env.reset(seed=0)
    assert frame.shape == (16, 16, 3) and frame.dtype == np.uint8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a 32x32 image is pixels: no warning
        ImageFrames(_TinyEnv(image))
    for shape in [(32, 32, 1), (32, 32)]:
        with pytest.raises(ValueError, match=re.escape(f"shape {shape}, not 3-channel RGB")):
            ImageFrames(_TinyEnv(spaces.Box(0, 255, shape, np.uint8)))
        with pytest.raises(ValueError, match=re.escape(f"shape {shape}, not 3-channel RGB")):
            ImageFrames(_TinyEnv(spaces.Dict({"image": spaces.Box(0, 255, shape, np.uint8)})))


def test_unknown_env_id():
    with pytest.raises(gym.error.Error, match="NoSuchGame"):
        make_vector_env("NoSuchGame-v0", 1)


def test_an_id_without_its_module_is_one_line_naming_the_module_form(tmp_path, capsys):
    from training.data.collect import main as collect_main

    with pytest.raises(SystemExit) as stopped:
        # an id no imported package registered (MiniGrid's are, once a test has imported minigrid)
        collect_main(["--env-id", "Frobnicate-Maze-6x6-v0", "--out", str(tmp_path / "data"), "--steps", "10"])
    err = capsys.readouterr().err.strip()
    assert stopped.value.code == 2 and len(err.splitlines()) == 1
    assert "name it MODULE:ID" in err and "frobnicate:Frobnicate-Maze-6x6-v0" in err and "Traceback" not in err
    assert not (tmp_path / "data").exists()  # no empty, locked folder left behind


def test_a_dataset_that_does_not_exist_is_not_found(tmp_path, capsys):
    from training.world_model.__main__ import main as world_model_main

    for missing in (str(tmp_path / "nowhere"), "nobody/no-dataset-v0"):
        with pytest.raises(SystemExit):
            world_model_main(["--data", missing, "--out", str(tmp_path / "wm"), "--steps", "1"])
        assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "wm").exists()


def test_world_model_steps_0_is_refused(tmp_path, capsys):
    from training.world_model.__main__ import main as world_model_main

    with pytest.raises(SystemExit) as stopped:
        world_model_main(["--data", str(tmp_path), "--out", str(tmp_path / "wm"), "--steps", "0"])
    assert stopped.value.code == 2 and "--steps 0 trains nothing" in capsys.readouterr().err
    assert not (tmp_path / "wm").exists()
