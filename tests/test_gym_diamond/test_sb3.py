"""DreamSB3VecEnv: SB3's VecEnv contract, checked directly, and PPO learning inside a hand-made dream."""

import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import BANDIT_ACTIONS, PONG_ACTIONS

from gym_diamond import (
    DreamCore,
    load_checkpoint,
)

pytest.importorskip("stable_baselines3")
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecMonitor, VecTransposeImage  # noqa: E402

from gym_diamond.envs.sb3 import DreamSB3VecEnv  # noqa: E402


@pytest.fixture
def env(pong_checkpoint):
    """4 dreams of the tiny untrained Pong model: its reward/termination model ends episodes often."""
    env = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, 4, device="cpu", max_episode_steps=4)
    yield env
    env.close()


@pytest.fixture(scope="module")
def bandit_checkpoint(bandit_path):
    ckpt = load_checkpoint(bandit_path, "cpu")  # round trip: what the env will load
    assert ckpt.game == "Bandit" and ckpt.action_meanings == BANDIT_ACTIONS
    return bandit_path


# --------------------------------------------------------------------------------- the VecEnv contract
def test_spaces_shapes_and_dtypes(env):
    assert isinstance(env, VecEnv) and env.num_envs == 4
    assert env.observation_space == gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    assert env.action_space == gym.spaces.Discrete(6)
    obs = env.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    obs, rewards, dones, infos = env.step(np.array([0, 1, 2, 5]))
    assert isinstance(obs, np.ndarray) and obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    assert isinstance(rewards, np.ndarray) and rewards.shape == (4,) and rewards.dtype == np.float32
    assert set(rewards.tolist()) <= {-1.0, 0.0, 1.0}
    assert isinstance(dones, np.ndarray) and dones.shape == (4,) and dones.dtype == bool
    assert isinstance(infos, list) and len(infos) == 4 and all(isinstance(i, dict) for i in infos)
    assert all(isinstance(i["TimeLimit.truncated"], bool) for i in infos)
    assert env.step([3, 3, 3, 3])[0].shape == (4, 64, 64, 3)  # lists of ints are fine too


def test_terminal_observation_is_the_final_frame(pong_checkpoint):
    """max_episode_steps=1: every env ends at step 1; a twin core without autoreset shows the frame it ended on."""
    env = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, 6, device="cpu", max_episode_steps=1)
    twin = DreamCore(env.core.model, load_checkpoint(pong_checkpoint).start_bank, 6, max_episode_steps=1,
                     autoreset=False)
    env.seed(11)
    env.reset()
    twin.reset(seed=list(range(11, 17)))
    actions = np.array([0, 1, 2, 3, 4, 5])
    obs, _, dones, infos = env.step(actions)
    ref = twin.step(torch.as_tensor(actions))
    assert dones.all()
    assert 0 < ref.terminated.sum() < 6  # the untrained termination model: both kinds of ending occur
    starts = env.core.start_source.frames[:, -1].numpy()  # each reset shows a bank context's last frame
    for i, info in enumerate(infos):
        final = info["terminal_observation"]
        assert final.dtype == np.uint8 and final.shape == (64, 64, 3)
        np.testing.assert_array_equal(final, ref.obs[i].numpy())
        assert info["TimeLimit.truncated"] == (not bool(ref.terminated[i]))
        assert any((obs[i] == s).all() for s in starts)  # already restarted
        assert not any((final == s).all() for s in starts)


def test_terminal_observation_exactly_for_done_envs(env):
    env.seed(0)
    env.reset()
    seen_done = seen_running = 0
    for step in range(12):
        obs, _, dones, infos = env.step(np.full(4, step % 6))
        for i, info in enumerate(infos):
            assert ("terminal_observation" in info) == bool(dones[i])
            if dones[i]:
                assert info["terminal_observation"].shape == (64, 64, 3)
                assert info["terminal_observation"].dtype == np.uint8
                seen_done += 1
            else:
                assert not info["TimeLimit.truncated"]
                seen_running += 1
    assert seen_done > 0 and seen_running > 0


def test_time_limit_truncation_and_bandit_reward(bandit_checkpoint):
    """The bandit dream never terminates: episodes end by time limit at exactly max_episode_steps."""
    env = DreamSB3VecEnv.from_checkpoint(bandit_checkpoint, 3, device="cpu", max_episode_steps=5)
    assert env.game == "Bandit" and env.env_method("get_action_meanings") == [BANDIT_ACTIONS] * 3
    env.seed(5)
    env.reset()
    rng = np.random.default_rng(0)
    agree = 0
    returns = np.zeros(3)
    for step in range(1, 16):
        actions = rng.integers(0, 3, 3)
        obs, rewards, dones, infos = env.step(actions)
        agree += int(((rewards == 1) == (actions == 1)).sum())
        returns += rewards
        ends = step % 5 == 0
        assert dones.tolist() == [ends] * 3
        assert [i["TimeLimit.truncated"] for i in infos] == [ends] * 3
        assert all(("terminal_observation" in i) == ends for i in infos)
        assert all(("episode" in i) == ends for i in infos)  # as SB3's Monitor reports a finished episode
        if ends:
            assert [i["episode"]["r"] for i in infos] == pytest.approx(returns.tolist())
            assert [i["episode"]["l"] for i in infos] == [5] * 3 and infos[0]["episode"]["t"] >= 0
            returns[:] = 0
    assert agree / 45 > 0.9  # the reward model pays for action 1, and (almost) only for it


def test_seed_then_reset_replays_the_trajectory(env):
    def rollout(seed):
        seeds = env.seed(seed)
        assert seeds == [seed + i for i in range(4)]
        out = [env.reset()]
        for step in range(6):
            obs, rewards, dones, infos = env.step(np.array([step % 6, 1, 2, (5 * step) % 6]))
            out += [obs, rewards, dones] + [i.get("terminal_observation", 0) for i in infos]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))
    assert env._seeds == [None] * 4  # seeds are used by one reset only, as SB3's base class says


def test_partial_seeds(env):
    env.seed(0)
    first = env.reset()
    env._seeds = [0, None, 2, None]  # what a caller filling SB3's per-env seeds could leave
    again = env.reset()
    np.testing.assert_array_equal(again[[0, 2]], first[[0, 2]])
    assert env._seeds == [None] * 4


def test_attrs_methods_images_and_render(pong_checkpoint):
    env = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, 4, device="cpu", render_size=128)
    assert env.get_attr("render_mode") == ["rgb_array"] * 4
    assert env.get_attr("game", indices=[0, 2]) == ["Pong", "Pong"]
    assert env.get_attr("num_envs", indices=1) == [4]
    assert env.has_attr("action_meanings") and not env.has_attr("no_such_thing")
    with pytest.raises(AttributeError):
        env.get_attr("no_such_thing")
    assert env.env_method("get_action_meanings") == [PONG_ACTIONS] * 4
    assert env.env_method("get_action_meanings", indices=[3]) == [PONG_ACTIONS]
    assert env.env_is_wrapped(gym.Wrapper) == [False] * 4
    env.set_attr("render_size", 64)
    assert env.get_attr("render_size") == [64] * 4
    env.set_attr("render_size", 128)
    with pytest.raises(ValueError, match="share"):
        env.set_attr("render_size", 32, indices=[1])
    with pytest.raises(RuntimeError, match="reset"):
        env.get_images()
    obs = env.reset()
    images = env.get_images()
    assert len(images) == 4
    for frame, image in zip(obs, images, strict=True):
        assert image.shape == (128, 128, 3) and image.dtype == np.uint8
        np.testing.assert_array_equal(image, frame.repeat(2, axis=0).repeat(2, axis=1))
    tiled = env.render(mode="rgb_array")
    assert tiled.shape == (256, 256, 3)
    np.testing.assert_array_equal(tiled[128:, :128], images[2])
    np.testing.assert_array_equal(env.render(), tiled)


def test_bad_actions_raise_clear_errors(env):
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(4, int))
    env.reset()
    with pytest.raises(ValueError, match="4 actions"):
        env.step(np.zeros(3, int))
    with pytest.raises(ValueError, match=r"in \[0, 6\)"):
        env.step(np.array([0, 1, 6, 0]))
    with pytest.raises(ValueError, match=r"in \[0, 6\)"):
        env.step(np.array([0, -1, 0, 0]))
    with pytest.raises(TypeError, match="integers"):
        env.step(np.zeros(4, np.float32))
    with pytest.raises(RuntimeError, match="step_async"):
        env.step_wait()
    assert env.step(np.zeros(4, np.int32))[0].shape == (4, 64, 64, 3)  # still usable


def test_constructor_validation(tiny_world_model, start_bank):
    core = DreamCore(tiny_world_model, start_bank, 2)
    assert DreamSB3VecEnv(core).get_action_meanings() == ["ACTION_0", "ACTION_1", "ACTION_2"]
    with pytest.raises(ValueError, match="action meanings"):
        DreamSB3VecEnv(core, action_meanings=["A", "B"])
    with pytest.raises(ValueError, match="render size"):
        DreamSB3VecEnv(core, render_size=0)
    with pytest.raises(ValueError, match="autoreset"):
        DreamSB3VecEnv(DreamCore(tiny_world_model, start_bank, 2, autoreset=False))
    with pytest.raises(TypeError, match="DreamCore"):
        DreamSB3VecEnv(tiny_world_model)
    with pytest.raises(ValueError, match="options"):
        env = DreamSB3VecEnv(core)
        env.set_options({"start": "ale"})
        env.reset()


def test_vec_transpose_monitor_and_ppo_smoke(env):
    venv = VecTransposeImage(VecMonitor(env))
    assert venv.observation_space.shape == (3, 64, 64)
    assert venv.reset().shape == (4, 3, 64, 64)
    obs, _, dones, infos = venv.step(np.zeros(4, int))
    assert obs.shape == (4, 3, 64, 64)
    for i in np.flatnonzero(dones):  # the wrapper transposes terminal observations too
        assert infos[i]["terminal_observation"].shape == (3, 64, 64)
    model = PPO("CnnPolicy", venv, n_steps=8, batch_size=16, n_epochs=1, seed=0, device="cpu",
                policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}})
    model.learn(64)
    assert model.num_timesteps == 64
    assert len(model.ep_info_buffer) > 0  # VecMonitor saw episodes end through dones
    bare = PPO("CnnPolicy", env, n_steps=8, batch_size=32, n_epochs=1, device="cpu",
               policy_kwargs={"features_extractor_kwargs": {"features_dim": 32}})  # SB3 adds VecTransposeImage
    bare.learn(64)
    assert len(bare.ep_info_buffer) > 0  # no VecMonitor: the adapter's own "episode" infos, so ep_rew_mean is logged


# ------------------------------------------------------------------------------------ learning in a dream
def test_ppo_learns_the_paying_action_in_a_dream(bandit_checkpoint):
    """Reward +1 for action 1 only: PPO, trained only in the dream, must come to prefer action 1."""
    start = time.perf_counter()
    env = DreamSB3VecEnv.from_checkpoint(bandit_checkpoint, 8, device="cpu", max_episode_steps=50)
    model = PPO("CnnPolicy", env, n_steps=32, batch_size=64, n_epochs=4, learning_rate=3e-3, gamma=0.9, seed=0,
                device="cpu", policy_kwargs={"features_extractor_kwargs": {"features_dim": 64}})
    env.seed(123)
    observations = [env.reset()]
    rng = np.random.default_rng(0)
    for _ in range(7):  # observations from the dream to judge the policy on
        observations.append(env.step(rng.integers(0, 3, 8))[0])
    observations = np.concatenate(observations)

    def p_pay() -> float:
        with torch.no_grad():
            obs = model.policy.obs_to_tensor(observations)[0]
            return model.policy.get_distribution(obs).distribution.probs[:, 1].mean().item()

    before = p_pay()
    model.learn(1280)  # P(action 1) ~0.94 (2,048 steps at a rate of 1e-3: ~0.998)
    after = p_pay()
    elapsed = time.perf_counter() - start
    print(f"P(action 1): {before:.3f} untrained -> {after:.3f} after 1280 dream steps ({elapsed:.1f} s)")
    assert abs(before - 1 / 3) < 0.1
    assert after > 0.8 and after > before + 0.4
    greedy, _ = model.predict(observations, deterministic=True)
    assert (greedy == 1).mean() > 0.9
