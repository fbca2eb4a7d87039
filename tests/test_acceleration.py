"""Speed switches: bf16, channels_last and torch.compile give the fp32 eager dream within stated tolerances."""

import shutil

import gymnasium as gym
import pytest
import torch

import gym_diamond  # noqa: F401
from gym_diamond import BatchedGenerator, WorldModel
from gym_diamond.acceleration import Acceleration
from gym_diamond.config import tiny_world_model_config

LEVEL = 2 / 255  # one uint8 level in [-1, 1] frames


def rollout(model: WorldModel, steps: int = 3, n: int = 4):
    """A fixed-seed imagined rollout: frames (steps, n, c, h, w), rewards, terminations (on the model's device)."""
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(n, 4, 3, 64, 64, generator=g) * 2 - 1).to(model.device)
    actions = torch.randint(0, 3, (n, 4), generator=g).to(model.device)
    generator = BatchedGenerator(range(n), device=model.device)
    state, out_frames, rewards, ends = None, [], [], []
    for _ in range(steps):
        out = model.imagine_step(frames, actions, state, generator)
        state = out.state
        frames = torch.cat([frames[:, 1:], out.next_frame[:, None]], 1)
        out_frames.append(out.next_frame), rewards.append(out.reward), ends.append(out.terminated)
    return torch.stack(out_frames), torch.stack(rewards), torch.stack(ends)


@pytest.fixture
def model() -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(tiny_world_model_config(num_actions=3)).eval()
    with torch.no_grad():  # untrained output layers are zero; perturb them so the networks shape the frames
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def test_cpu_default_is_fp32_eager_channels_last(model):
    assert Acceleration.default_for("cpu") == Acceleration(channels_last=True)
    model.accelerate()
    assert model.acceleration == Acceleration(channels_last=True)
    assert model.denoiser.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_matches_contiguous(model):
    reference = rollout(model)
    got = rollout(model.accelerate(Acceleration(channels_last=True)))
    assert model.denoiser.net.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert (got[0] - reference[0]).abs().max() <= LEVEL + 1e-6  # float reordering: at most one level apart
    assert (got[0] != reference[0]).float().mean() < 0.01


def test_bf16_frames_agree_with_fp32_within_tolerance(model):
    reference = rollout(model)
    got = rollout(model.accelerate(Acceleration(precision="bf16")))
    assert got[0].dtype == torch.float32  # the sampler and the frames stay fp32
    error = (got[0] - reference[0]).abs()
    # stated tolerance, over 3 autoregressive steps: every pixel within 2 uint8 levels, under half a level
    # on average (measured: 0.12 levels mean, 1 level max)
    assert error.mean() < 0.5 * LEVEL and error.max() <= 2 * LEVEL + 1e-6
    assert error.max() > 0  # bf16 was really used


@pytest.mark.skipif(shutil.which("cc") is None, reason="torch.compile (inductor) needs a C compiler")
def test_compiled_step_matches_eager(model):
    torch._dynamo.reset()
    reference = rollout(model)
    got = rollout(model.accelerate(Acceleration(compile=True)))
    assert (got[0] - reference[0]).abs().max() <= LEVEL + 1e-6
    assert (got[0] != reference[0]).float().mean() < 0.01
    assert torch.equal(got[2], reference[2])


def test_unsupported_switches_are_rejected(model, pong_checkpoint):
    with pytest.raises(ValueError, match="CUDA device"):
        model.accelerate(Acceleration(compile=True, cuda_graphs=True))
    with pytest.raises(ValueError, match="needs compile=True"):
        Acceleration(cuda_graphs=True)
    with pytest.raises(ValueError, match="precision"):
        Acceleration(precision="fp16")
    with pytest.raises(ValueError, match="CUDA device"):
        gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu", compile=True, cuda_graphs=True)
    with pytest.raises(ValueError, match="denoising_steps"):
        gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, denoising_steps=0)


def test_env_options_reach_the_world_model(pong_checkpoint):
    env = gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=pong_checkpoint, device="cpu",
                       precision="bf16", denoising_steps=1)
    model = env.unwrapped.core.model
    assert model.acceleration.precision == "bf16" and model.config.sampler.num_steps == 1
    calls = []
    model.denoiser.net.register_forward_hook(lambda *_: calls.append(1))
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert len(calls) == 1  # one denoising step: one U-Net pass for both environments


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fast_path_matches_fp32_eager(model):
    model = model.cuda()
    reference = rollout(model)
    fast = Acceleration(precision="bf16", channels_last=True, compile=True, cuda_graphs=True)
    got = rollout(model.accelerate(fast))
    error = (got[0] - reference[0]).abs()
    assert error.mean() < 0.5 * LEVEL and error.max() <= 2 * LEVEL + 1e-6
    again = rollout(model)  # replayed graphs give the same dream as their first capture
    assert torch.equal(again[0], got[0])
