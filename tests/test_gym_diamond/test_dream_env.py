import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from helpers import PONG_ACTIONS, make_tiny_checkpoint

import gym_diamond
from gym_diamond.envs import DreamEnv
from gym_diamond.registration import find_checkpoint


def test_every_ale_game_is_registered_and_one_id_for_any_checkpoint():
    from gym_diamond.atari import available_games

    ids = {k for k in gym.registry if k.startswith("DiamondDream/")}
    assert {f"DiamondDream/{g}-v0" for g in available_games()} | {"DiamondDream/Dream-v0"} == ids
    assert "DiamondDream/Pong-v0" in ids and "DiamondDream/Breakout-v0" in ids


def test_gym_make_passes_gymnasium_check_env(pong_checkpoint):
    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint)
    assert env.spec.max_episode_steps == 1000
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(env.unwrapped, skip_render_check=True)  # rgb_array rendering: its own test below
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
    assert env.unwrapped.get_action_meanings() == PONG_ACTIONS
    assert env.action_space == gym.spaces.Discrete(6)


def test_sb3_env_checker_accepts_dream_env(pong_checkpoint):
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(DreamEnv("Pong", pong_checkpoint), warn=True)


def test_module_prefix_imports_the_plugin(pong_checkpoint):
    env = gym.make("gym_diamond:DiamondDream/Pong-v0", checkpoint=pong_checkpoint)
    assert isinstance(env.unwrapped, DreamEnv)


def test_same_seed_same_dream_and_different_seed_differs(pong_checkpoint):
    env = DreamEnv("Pong", pong_checkpoint)
    actions = [1, 2, 3, 0, 5, 4, 2, 2]

    def play(seed):
        obs, _ = env.reset(seed=seed)
        frames, rewards, ends = [obs], [], []
        for a in actions:
            obs, r, term, trunc, _ = env.step(a)
            frames.append(obs), rewards.append(r), ends.append(term)
            if term:
                frames.append(env.reset()[0])
        return np.stack(frames), rewards, ends

    a, b, c = play(7), play(7), play(8)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and a[2] == b[2]
    assert not np.array_equal(a[0][1:], c[0][1:])


def test_episode_ends_and_time_limit(pong_checkpoint):
    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, max_episode_steps=3)
    env.reset(seed=0)
    for step in range(1, 4):
        _, _, term, trunc, info = env.step(0)
        assert info["episode_step"] == step
        if term:
            break
    assert term or trunc


def test_render_rgb_array_upscales_the_observation(pong_checkpoint):
    env = DreamEnv("Pong", pong_checkpoint, render_mode="rgb_array", render_size=128)
    obs, _ = env.reset(seed=0)
    frame = env.render()
    assert frame.shape == (128, 128, 3)
    assert np.array_equal(frame[::2, ::2], obs) and np.array_equal(frame[1::2, 1::2], obs)


def test_human_render_without_pygame_says_how_to_install(pong_checkpoint, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_pygame(name, *args, **kwargs):
        if name == "pygame":
            raise ImportError("No module named 'pygame'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pygame)
    env = DreamEnv("Pong", pong_checkpoint, render_mode="human")
    with pytest.raises(ImportError, match=r"gym-diamond\[play\]"):
        env.reset(seed=0)


@pytest.mark.parametrize("action, error", [(6, ValueError), (-1, ValueError), (1.0, TypeError), ("1", TypeError)])
def test_bad_actions_raise(pong_checkpoint, action, error):
    env = DreamEnv("Pong", pong_checkpoint)
    env.reset(seed=0)
    with pytest.raises(error, match=r"\[0, 6\)"):
        env.step(action)


def test_checkpoint_lookup_order(tmp_path, monkeypatch, pong_checkpoint):
    monkeypatch.delenv("GYM_DIAMOND_HOME", raising=False)
    with pytest.raises(FileNotFoundError) as e:
        find_checkpoint("Seaquest")  # no world model ships for it
    message = str(e.value)
    assert "checkpoint=PATH" in message and "GYM_DIAMOND_HOME" in message and "pretrained" in message
    assert "python -m training.pipeline --game Seaquest" in message
    home = tmp_path / "home"
    home.mkdir()
    make_tiny_checkpoint(home / "Pong.safetensors")
    monkeypatch.setenv("GYM_DIAMOND_HOME", str(home))
    assert find_checkpoint("Pong") == home / "Pong.safetensors"
    assert find_checkpoint("Pong", pong_checkpoint) == pong_checkpoint  # the argument comes first
    assert isinstance(gym.make("DiamondDream/Pong-v0").unwrapped, DreamEnv)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_checkpoint("Pong", tmp_path / "missing.safetensors")


def test_checkpoint_of_another_game_is_an_error(pong_checkpoint):
    with pytest.raises(ValueError, match="world model of 'Pong'.*Breakout"):
        gym.make("DiamondDream/Breakout-v0", checkpoint=pong_checkpoint)


def test_dream_can_start_from_the_real_game(pong_checkpoint):
    env = DreamEnv("Pong", pong_checkpoint, start="bank")
    bank_obs, _ = env.reset(seed=0)
    ale_obs, _ = env.reset(seed=0, options={"start": "ale"})
    real = gym_diamond.atari.make_atari_env("Pong")
    real_obs, _ = real.reset(seed=0)
    assert not np.array_equal(bank_obs, ale_obs)
    # a real Pong frame: its background colour dominates, unlike the random start bank
    colours, counts = np.unique(ale_obs.reshape(-1, 3), axis=0, return_counts=True)
    assert counts.max() > 0.5 * 64 * 64
    assert tuple(colours[counts.argmax()]) == tuple(np.unique(real_obs.reshape(-1, 3), axis=0, return_counts=True)[0][
        np.unique(real_obs.reshape(-1, 3), axis=0, return_counts=True)[1].argmax()])
    env.step(0)
    with pytest.raises(ValueError, match="start must be one of"):
        env.reset(options={"start": "moon"})


def test_dream_can_start_from_given_frames(pong_checkpoint):
    """A bank context given by hand replays the very dream a bank start with the same seed made."""
    env = DreamEnv("Pong", pong_checkpoint)
    bank = env.core.start_source.frames.numpy(), env.core.start_source.actions.numpy()
    obs, _ = env.reset(seed=3)
    (chosen,) = [i for i in range(len(bank[0])) if np.array_equal(bank[0][i, -1], obs)]
    from_bank = [env.step(a)[0] for a in (2, 3, 0)]

    given, _ = env.reset(seed=3, options={"context": bank[0][chosen], "context_actions": bank[1][chosen]})
    assert np.array_equal(given, bank[0][chosen, -1])
    assert all(np.array_equal(a, env.step(b)[0]) for a, b in zip(from_bank, (2, 3, 0), strict=True))

    other = bank[0][(chosen + 1) % len(bank[0])]
    assert np.array_equal(env.reset(seed=3, options={"context": other})[0], other[-1])
    assert not np.array_equal(env.step(2)[0], from_bank[0])
    assert np.array_equal(env.reset(seed=3)[0], obs)  # the next plain reset draws from the bank again


@pytest.mark.parametrize(("options", "message"), [
    ({"context": np.zeros((4, 64, 64, 3), np.float32)}, "uint8 frames of shape"),
    ({"context": np.zeros((3, 64, 64, 3), np.uint8)}, r"shape \(4, 64, 64, 3\)"),
    ({"context": np.zeros((4, 64, 64, 3), np.uint8), "context_actions": [0, 1, 2]}, "4 integers in"),
    ({"context": np.zeros((4, 64, 64, 3), np.uint8), "context_actions": [0, 1, 2, 6]}, r"in \[0, 6\)"),
    ({"context": np.zeros((4, 64, 64, 3), np.uint8), "start": "ale"}, "exclude each other"),
    ({"context_actions": [0, 0, 0, 0]}, "needs 'context'"),
    ({"contex": None}, "unknown reset option"),
])
def test_bad_start_options_are_rejected(pong_checkpoint, options, message):
    with pytest.raises(ValueError, match=message):
        DreamEnv("Pong", pong_checkpoint).reset(options=options)


def test_real_game_plays_on_from_the_dream_start(pong_checkpoint):
    env = DreamEnv("Pong", pong_checkpoint)
    env.reset(seed=0)
    assert env.real_game is None  # a bank start has no real game behind it
    obs, _ = env.reset(seed=0, options={"start": "ale"})
    real_obs, *_ = env.real_game.step(0)
    assert real_obs.shape == obs.shape and real_obs.dtype == np.uint8
    assert (real_obs == obs).all(axis=-1).mean() > 0.95  # one step on from the frame the dream started at
    env.reset(seed=0, options={"context": np.zeros((4, 64, 64, 3), np.uint8)})
    assert env.real_game is None
    env.close()


def test_gymnasiums_record_video_films_a_dream(pong_checkpoint, tmp_path):
    pytest.importorskip("moviepy")  # the examples' extras bring it
    from gymnasium.wrappers import RecordVideo

    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, render_mode="rgb_array", max_episode_steps=3,
                   device="cpu")
    env = RecordVideo(env, str(tmp_path / "videos"), episode_trigger=lambda episode: True, disable_logger=True)
    env.reset(seed=0)
    for _ in range(3):
        env.step(env.action_space.sample())
    env.close()
    videos = list((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 1 and videos[0].stat().st_size > 0
