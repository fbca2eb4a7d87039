"""The real games: gym_diamond.atari.AtariEnv and training.data.vector_atari's native vector env (Atari 100k
protocol)."""

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from gym_diamond.atari import (
    AtariEnv,
    available_games,
    game_to_ale_id,
    game_to_name,
    game_to_rom_id,
    make_atari_env,
)
from gym_diamond.games import ATARI_GAMES, normalise_game_name
from training.data.vector_atari import make_vector_atari


def test_game_names():
    games = available_games()
    assert {"Pong", "Breakout", "MsPacman", "KungFuMaster"} <= set(games)
    assert game_to_ale_id("pong") == game_to_ale_id("ALE/Pong-v5") == "ALE/Pong-v5"
    assert game_to_name("ms_pacman") == game_to_name("ALE/MsPacman-v5") == "MsPacman"
    assert game_to_rom_id("KungFuMaster") == "kung_fu_master"


def test_the_games_registered_without_ale_py_are_the_games_ale_py_registers():
    # gym_diamond.games lists them so that import gym_diamond need not load the emulator; an ale-py that adds
    # or drops a game shows here
    assert list(ATARI_GAMES) == available_games()
    assert {normalise_game_name(n) for n in ("MsPacman", "ms_pacman", "ALE/MsPacman-v5", "ms pacman")} == {"mspacman"}


def test_unknown_game_suggests_names():
    with pytest.raises(ValueError, match="Pongg.*did you mean Pong"):
        game_to_name("Pongg")
    with pytest.raises(ValueError, match="unknown Atari game"):
        make_atari_env("NotAGame")
    with pytest.raises(ValueError, match="unknown Atari game"):
        make_vector_atari("NotAGame", 1)
    with pytest.raises(TypeError):
        game_to_name(3)


def test_check_env():
    check_env(make_atari_env("Pong", seed=0), skip_render_check=True)
    check_env(make_atari_env("Breakout", done_on_life_loss=True), skip_render_check=True)


def test_observations_and_actions():
    env = make_atari_env("Breakout", seed=1, render_mode="rgb_array")
    assert env.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    assert env.action_space == gym.spaces.Discrete(4)
    obs, info = env.reset()
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    assert info == {"lives": 5, "life_loss": False, "noops": info["noops"]} and 1 <= info["noops"] <= 30
    assert env.render().shape == (210, 160, 3)
    for _ in range(5):
        obs, reward, terminated, truncated, info = env.step(1)
    assert obs.max() > obs.min()
    assert (obs[..., 0] != obs[..., 2]).any()  # colour, not grey
    assert isinstance(reward, float) and info["lives"] == 5 and info["life_loss"] is False
    with pytest.raises(ValueError):
        env.step(4)


def test_frames_follow_the_protocol():
    """Reset: noops then the last frame alone; each step: 4 frames, max of the last 2, area-resized."""
    env = make_atari_env("Breakout")
    obs, info = env.reset(seed=7)
    raw = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0).unwrapped
    raw.reset(seed=7)
    for _ in range(info["noops"]):
        screen = raw.step(0)[0]

    def shrink(frame):
        return cv2.resize(frame, (64, 64), interpolation=cv2.INTER_AREA)

    np.testing.assert_array_equal(obs, shrink(screen))
    rng = np.random.default_rng(0)
    for _ in range(30):
        a = int(rng.integers(4))
        screens, total = [], 0.0
        for _ in range(4):
            screen, r, *_ = raw.step(a)
            screens.append(screen)
            total += r
        obs, reward, *_ = env.step(a)
        np.testing.assert_array_equal(obs, shrink(np.maximum(screens[-2], screens[-1])))
        assert reward == total


def test_same_seed_same_game():
    def play(seed):
        env = make_atari_env("MsPacman", seed=seed)
        obs, info = env.reset()
        frames, rewards = [obs], []
        rng = np.random.default_rng(0)
        for _ in range(50):
            obs, r, *_ = env.step(int(rng.integers(env.action_space.n)))
            frames.append(obs)
            rewards.append(r)
        return np.stack(frames), rewards, info["noops"]

    a, b = play(3), play(3)
    np.testing.assert_array_equal(a[0], b[0])
    assert a[1:] == b[1:]
    pong = make_atari_env("Pong")
    noops = {pong.reset(seed=s)[1]["noops"] for s in range(6)}
    assert len(noops) > 1 and all(1 <= n <= 30 for n in noops)
    assert make_atari_env("Pong", noop_max=0).reset(seed=0)[1]["noops"] == 0


def _play_until_life_loss(env, rng, limit=2000):
    for _ in range(limit):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        if info["life_loss"]:
            return obs, terminated, info
    raise AssertionError("no life lost")


def test_done_on_life_loss_continues_the_game():
    env = make_atari_env("Breakout", done_on_life_loss=True, seed=0)
    env.reset()
    rng = np.random.default_rng(0)
    obs, terminated, info = _play_until_life_loss(env, rng)
    assert terminated and info["lives"] == 4
    obs2, info2 = env.reset()  # the same game goes on: no no-ops, the same frame
    np.testing.assert_array_equal(obs2, obs)
    assert info2 == {"lives": 4, "life_loss": False, "noops": 0}
    _play_until_life_loss(env, rng)
    assert env.reset()[1]["lives"] == 3
    assert env.reset(seed=1)[1]["lives"] == 5  # a seed starts a new game


def test_life_loss_without_termination():
    env = make_atari_env("Breakout", seed=0)
    env.reset()
    _, terminated, info = _play_until_life_loss(env, np.random.default_rng(0))
    assert not terminated and info["lives"] == 4


# ---------------------------------------------------------------------------- vector env
def test_vector_env_spec_and_life_loss():
    env = make_vector_atari("Breakout", 2, seed=0, done_on_life_loss=True)
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert env.single_action_space == gym.spaces.Discrete(4)
    assert env.get_action_meanings() == ["NOOP", "FIRE", "RIGHT", "LEFT"]
    obs, info = env.reset()
    assert obs.shape == (2, 64, 64, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    np.testing.assert_array_equal(info["lives"], [5, 5])
    rng = np.random.default_rng(0)
    losses = 0
    for _ in range(400):
        obs, rewards, terminated, truncated, info = env.step(rng.integers(0, 4, 2))
        assert obs.shape == (2, 64, 64, 3) and rewards.dtype == np.float32
        assert info["life_loss"].dtype == bool and info["life_loss"].shape == (2,)
        np.testing.assert_array_equal(terminated[info["life_loss"]], True)  # done on life loss
        for i in np.flatnonzero(info["life_loss"] & (info["lives"] < 5)):  # not a game over: the game goes on
            np.testing.assert_array_equal(info["final_obs"][i], obs[i])
        losses += info["life_loss"].sum()
    assert losses >= 2
    env.close()


def test_vector_env_frames_match_atari_env():
    """Both implementations give the same pixels for the same game (no no-ops in either)."""
    single = AtariEnv("Breakout", noop_max=0, seed=3)
    vector = make_vector_atari("Breakout", 1, seed=3, noop_max=0, done_on_life_loss=False)
    o1, _ = single.reset()
    o2, _ = vector.reset()
    np.testing.assert_array_equal(o1, o2[0])
    rng = np.random.default_rng(1)
    for _ in range(150):
        a = int(rng.integers(4))
        o1, r1, te1, tr1, i1 = single.step(a)
        o2, r2, te2, tr2, i2 = vector.step(np.array([a]))
        if te1 or tr1:
            break
        np.testing.assert_array_equal(o1, o2[0])
        assert (r1, te1, i1["life_loss"], i1["lives"]) == (r2[0], te2[0], i2["life_loss"][0], i2["lives"][0])


def test_vector_env_seeding():
    def run(seed):
        env = make_vector_atari("Pong", 2, seed=seed)
        frames = [env.reset()[0]]
        for a in np.random.default_rng(0).integers(0, 6, (20, 2)):
            frames.append(env.step(a)[0])
        return np.stack(frames), env.reset(seed=seed)[1]["episode_frame_number"]

    (a, na), (b, nb) = run(5), run(5)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(na, nb)
    with pytest.raises(ValueError):
        make_vector_atari("Pong", 0)
