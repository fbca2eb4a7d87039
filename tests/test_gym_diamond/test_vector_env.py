import gymnasium as gym
import numpy as np
import pytest
import torch

import gym_diamond  # noqa: F401  (registers the ids)
from gym_diamond.envs import DreamVectorEnv
from gym_diamond.nn.unet import UNet


def make(checkpoint, n, **kwargs):
    return gym.make_vec("DiamondDream/Pong-v0", num_envs=n, vectorization_mode="vector_entry_point",
                        checkpoint=checkpoint, device="cpu", **kwargs)


def test_make_vec_builds_the_batched_env(pong_checkpoint):
    env = make(pong_checkpoint, 4)
    assert isinstance(env, DreamVectorEnv)
    assert env.metadata["autoreset_mode"] == gym.vector.AutoresetMode.SAME_STEP
    assert env.core.max_episode_steps == 1000  # the spec's limit reaches the vector constructor
    obs, _ = env.reset(seed=0)
    assert obs.shape == (4, 64, 64, 3) and obs.dtype == np.uint8
    assert env.observation_space.shape == (4, 64, 64, 3)
    obs, rew, term, trunc, _ = env.step(env.action_space.sample())
    assert obs.shape == (4, 64, 64, 3) and rew.shape == (4,) and term.dtype == bool and trunc.dtype == bool
    assert set(np.unique(rew)) <= {-1.0, 0.0, 1.0}


@pytest.mark.parametrize("n, window, states", [(1, 19, 2), (8, 19, 2), (64, 19, 2), (8, None, 1)])
def test_one_sampler_call_per_step_whatever_n(pong_checkpoint, n, window, states):
    env = make(pong_checkpoint, n, rew_end_window=window)
    env.reset(seed=0)
    batches = []
    unet = next(m for m in env.core.model.modules() if isinstance(m, UNet))
    handle = unet.register_forward_hook(lambda mod, args, out: batches.append(args[0].shape[0]))
    rew_calls = []
    handle2 = env.core.model.rew_end.register_forward_hook(lambda mod, args, out: rew_calls.append(args[0].shape))
    env.step(np.zeros(n, dtype=np.int64))
    handle.remove(), handle2.remove()
    assert batches == [n] * env.core.model.config.sampler.num_steps
    # one reward/termination call for the step, every LSTM state of every environment in it (plus the burn-in calls
    # when some environments restarted)
    assert rew_calls[0][:2] == (states * n, 1) and len(rew_calls) <= 1 + states


def test_same_step_autoreset_reports_final_obs_and_restarts(pong_checkpoint):
    env = make(pong_checkpoint, 8, max_episode_steps=3)
    obs, _ = env.reset(seed=1)
    bank = env.core.start_source.frames.numpy()  # (k, 4, 64, 64, 3)
    seen_end = False
    for t in range(6):
        frames_before = env.core.frames.clone()
        obs, _, term, trunc, info = env.step(np.full(8, t % 6))
        done = term | trunc
        if done.any():
            seen_end = True
            assert np.array_equal(info["_final_obs"], done)
            for i in np.flatnonzero(done):
                # the ended episode's last frame is reported, and the new first frame is a bank context's last
                assert info["final_obs"][i].shape == (64, 64, 3)
                assert any(np.array_equal(obs[i], b[-1]) for b in bank)
                assert env.core.episode_steps[i] == 0
            for i in np.flatnonzero(~done):
                assert info["final_obs"][i] is None
                assert np.array_equal(obs[i], env.core.frames[i, -1].add(1).mul(127.5).round().byte()
                                      .permute(1, 2, 0).numpy())
                assert torch.equal(env.core.frames[i, :-1], frames_before[i, 1:])  # history rolled, not reset
        assert not (term & trunc).any()
    assert seen_end


def test_final_obs_is_the_dreamed_frame(pong_checkpoint):
    """final_obs equals what the same environment dreams when it does not reset (autoreset off)."""
    env = make(pong_checkpoint, 8, max_episode_steps=2)
    env.reset(seed=3)
    from gym_diamond.envs.core import DreamCore

    twin = DreamCore(env.core.model, _bank(env), num_envs=8, max_episode_steps=2, autoreset=False)
    twin.reset(seed=3)
    for _ in range(2):
        _, _, term, trunc, info = env.step(np.ones(8, dtype=np.int64))
        ref = twin.step(torch.ones(8, dtype=torch.long))
        if (term | trunc).any():
            break
    for i in np.flatnonzero(term | trunc):
        np.testing.assert_array_equal(info["final_obs"][i], ref.final_obs[i].numpy())


def _bank(env):
    from gym_diamond import StartBank

    return StartBank(env.core.start_source.frames.numpy(), env.core.start_source.actions.numpy())


def test_environments_do_not_leak_into_each_other(pong_checkpoint):
    """Environment i dreams the same alone as among 7 others that end and restart around it."""
    steps = 10
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 6, (steps, 8))
    batch = make(pong_checkpoint, 8, max_episode_steps=4)
    batch.reset(seed=[10 + i for i in range(8)])
    batch_out = [batch.step(a)[:4] for a in actions]
    for i in (0, 5):
        alone = make(pong_checkpoint, 1, max_episode_steps=4)
        alone.reset(seed=[10 + i])
        for t in range(steps):
            obs, rew, term, trunc = alone.step(actions[t, i:i + 1])[:4]
            assert rew[0] == batch_out[t][1][i] and term[0] == batch_out[t][2][i] and trunc[0] == batch_out[t][3][i]
            assert np.abs(obs[0].astype(int) - batch_out[t][0][i].astype(int)).max() <= 1


def test_seeding_reproduces_and_different_seeds_differ(pong_checkpoint):
    def run(seed):
        env = make(pong_checkpoint, 4)
        out = [env.reset(seed=seed)[0]]
        for t in range(6):
            obs, rew, term, _, _ = env.step(np.full(4, t % 6))
            out += [obs, rew, term]
        return out

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a[1:], c[1:], strict=True))


def test_reset_mask_resets_only_some(pong_checkpoint):
    env = make(pong_checkpoint, 4)
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(4, dtype=np.int64))
    before = env.core.frames.clone()
    steps_before = env.core.episode_steps.clone()
    mask = np.array([True, False, True, False])
    env.reset(options={"reset_mask": mask})
    assert torch.equal(env.core.frames[1], before[1]) and torch.equal(env.core.frames[3], before[3])
    assert env.core.episode_steps.tolist() == [0, int(steps_before[1]), 0, int(steps_before[3])]
    with pytest.raises(ValueError, match="reset mask must be bool"):
        env.reset(options={"reset_mask": np.array([1, 0, 1, 0])})


def test_torch_output_returns_device_tensors(pong_checkpoint):
    env = make(pong_checkpoint, 4, output="torch")
    obs, _ = env.reset(seed=0)
    assert isinstance(obs, torch.Tensor) and obs.dtype == torch.uint8 and obs.shape == (4, 64, 64, 3)
    obs, rew, term, trunc, info = env.step(torch.zeros(4, dtype=torch.long))
    assert all(isinstance(x, torch.Tensor) for x in (obs, rew, term, trunc, info["final_obs"], info["_final_obs"]))
    numpy_env = make(pong_checkpoint, 4)
    np_obs, _ = numpy_env.reset(seed=0)
    np_obs2 = numpy_env.step(np.zeros(4, dtype=np.int64))[0]
    assert np.array_equal(np_obs2, obs.numpy())


@pytest.mark.parametrize("actions, error, match", [
    (np.zeros(3, dtype=np.int64), ValueError, r"expected 4 actions"),
    (np.full(4, 6), ValueError, r"in \[0, 6\)"),
    (np.full(4, -1), ValueError, r"in \[0, 6\)"),
    (np.zeros(4, dtype=np.float32), TypeError, "integers"),
    (torch.zeros(4, 1, dtype=torch.long), ValueError, r"expected 4 actions"),
])
def test_bad_actions_raise(pong_checkpoint, actions, error, match):
    env = make(pong_checkpoint, 4)
    env.reset(seed=0)
    with pytest.raises(error, match=match):
        env.step(actions)


def test_bad_constructor_arguments(pong_checkpoint):
    with pytest.raises(ValueError, match="output must be one of"):
        DreamVectorEnv(2, "Pong", pong_checkpoint, output="jax")
    with pytest.raises(ValueError, match="num_envs must be a positive integer"):
        DreamVectorEnv(0, "Pong", pong_checkpoint)
    with pytest.raises(ValueError, match="device must be like"):
        DreamVectorEnv(2, "Pong", pong_checkpoint, device="tpu:x")


def test_render_returns_one_frame_per_env(pong_checkpoint):
    env = make(pong_checkpoint, 3, render_mode="rgb_array", render_size=64)
    obs, _ = env.reset(seed=0)
    frames = env.render()
    assert len(frames) == 3 and np.array_equal(np.stack(frames), obs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_rejects_host_actions(pong_checkpoint):
    cpu = make(pong_checkpoint, 8)
    gpu = gym.make_vec("DiamondDream/Pong-v0", num_envs=8, vectorization_mode="vector_entry_point",
                       checkpoint=pong_checkpoint, device="cuda", output="torch")
    a, _ = cpu.reset(seed=0)
    b, _ = gpu.reset(seed=0)
    assert np.array_equal(a, b.cpu().numpy())
    for t in range(5):
        acts = np.full(8, t % 6)
        a, ra, ta, _, _ = cpu.step(acts)
        b, rb, tb, _, _ = gpu.step(torch.as_tensor(acts, device="cuda"))
        assert np.abs(a.astype(int) - b.cpu().numpy().astype(int)).max() <= 2
    with pytest.raises(ValueError, match="actions are on cpu"):
        gpu.step(torch.zeros(8, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_torch_output_step_on_cuda_never_synchronises(pong_checkpoint):
    envs = gym.make_vec("DiamondDream/Pong-v0", num_envs=8, vectorization_mode="vector_entry_point",
                        checkpoint=pong_checkpoint, device="cuda", output="torch", max_episode_steps=3)
    envs.reset(seed=0)
    actions = torch.ones(8, dtype=torch.long, device="cuda")
    envs.step(actions)  # the first step after a reset checks its actions at once (one sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync inside a step now raises
    try:
        for _ in range(6):  # episodes of 3 steps: autoresets happen inside these steps too
            obs, reward, terminated, truncated, infos = envs.step(actions)
        bad = torch.full((8,), 99, device="cuda")
        envs.step(bad)  # out of range: clamped on the device, flagged without a sync
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert obs.is_cuda and reward.is_cuda and truncated.any()
    with pytest.raises(ValueError, match=r"actions outside \[0, 6\) were given"):
        envs.reset()
    with pytest.raises(ValueError, match=r"must be in \[0, 6\)"):
        envs.step(torch.full((8,), -1, device="cuda"))  # the first batch after reset: checked at once


def test_a_single_dream_and_environment_0_of_a_vector_dream_seeded_alike_agree(bandit_path, one_thread):
    """gym.make(seed=s) and gym.make_vec(seed=s)[0] draw the same numbers step for step while no episode ends (each
    step of a vector dream draws a start number for its autoreset; the single dream draws it too)."""
    path = bandit_path  # a dream that never terminates
    single = gym.make("DiamondDream/Dream-v0", checkpoint=path, device="cpu", precision="fp32")
    vector = gym.make_vec("DiamondDream/Dream-v0", num_envs=3, checkpoint=path, device="cpu", precision="fp32")
    obs, _ = single.reset(seed=7)
    obs_vec, _ = vector.reset(seed=7)
    np.testing.assert_array_equal(obs, obs_vec[0])
    for step in range(6):
        action = step % 3
        obs, reward, terminated, truncated, _ = single.step(action)
        obs_vec, rewards, terms, truncs, _ = vector.step(np.array([action, 0, 1]))
        assert not (terminated or truncated or terms[0] or truncs[0])
        np.testing.assert_array_equal(obs, obs_vec[0], err_msg=f"step {step}")
        assert reward == rewards[0]
