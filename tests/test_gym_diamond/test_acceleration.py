"""Speed switches: bf16, channels_last and torch.compile give the fp32 eager dream within stated tolerances."""


import gymnasium as gym
import pytest
import torch

import gym_diamond  # noqa: F401
from gym_diamond import BatchedGenerator, WorldModel
from gym_diamond.acceleration import Acceleration
from gym_diamond.config import tiny_world_model_config
from gym_diamond.envs.sb3 import DreamSB3VecEnv

LEVEL = 2 / 255  # one uint8 level in [-1, 1] frames


def rollout(model: WorldModel, steps: int = 3, n: int = 4, states: int = 1):
    """A fixed-seed imagined rollout: frames (steps, n, c, h, w), rewards, terminations (on the model's device).
    With 2 ``states``, two reward/termination LSTM states stepped together, environments reading one each in turn
    (as a dream's staggered reading does)."""
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(n, 4, 3, 64, 64, generator=g) * 2 - 1).to(model.device)
    actions = torch.randint(0, 3, (n, 4), generator=g).to(model.device)
    generator = BatchedGenerator(range(n), device=model.device)
    state, out_frames, rewards, ends = None, [], [], []
    read_from = None
    if states > 1:
        burnt = model.burn_in(frames, actions)
        state = tuple(torch.cat([s, torch.zeros_like(s)], dim=1) for s in burnt)
        read_from = (torch.arange(n, device=model.device) % 2)
    for _ in range(steps):
        out = model.imagine_step(frames, actions, state, generator, read_from=read_from)
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


def test_compiled_step_matches_eager(model, monkeypatch):
    """compile=True captures the imagined step and gives the eager step's frames. On a CPU the graph runs through
    AOTAutograd without inductor's C++ code generation (a minute, cold, for torch's own numerics); the CUDA test
    below runs inductor."""
    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: compile_(fn, **{**kwargs, "backend": "aot_eager",
                                                                            "mode": None}))
    torch._dynamo.reset()
    reference, staggered = rollout(model), rollout(model, states=2)
    model.accelerate(Acceleration(compile=True))
    for want, got in ((reference, rollout(model)), (staggered, rollout(model, states=2))):
        assert (got[0] - want[0]).abs().max() <= LEVEL + 1e-6
        assert (got[0] != want[0]).float().mean() < 0.01
        assert torch.equal(got[2], want[2])


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
    with pytest.raises(ValueError, match="sampler_start must be one of"):
        gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, sampler_start="sigma")


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


def first_denoiser_input_std(env) -> float:
    """The spread of the noisy frame the U-Net sees at a step's first denoising pass."""
    seen = []
    hook = env.unwrapped.core.model.denoiser.net.register_forward_hook(lambda _, inputs, __: seen.append(inputs[0]))
    env.reset(seed=0)
    env.step(env.action_space.sample())
    hook.remove()
    return float(seen[0].std())


def test_the_sampler_start_reaches_the_world_model(pong_checkpoint):
    stds = {}
    for start in ("unit", "sigma_max"):
        env = gym.make_vec("DiamondDream/Pong-v0", num_envs=2, checkpoint=pong_checkpoint, device="cpu",
                           sampler_start=start)
        sampler = env.unwrapped.core.model.config.sampler
        assert sampler.start == start
        stds[start] = first_denoiser_input_std(env)
    # the first step's noise is scaled by sigma_max (the U-Net's input by c_in, the same for both)
    assert stds["sigma_max"] / stds["unit"] == pytest.approx(sampler.sigma_max, rel=0.1)
    single = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu", sampler_start="sigma_max")
    assert single.unwrapped.core.model.config.sampler.start == "sigma_max"
    assert gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu"
                    ).unwrapped.core.model.config.sampler.start == "unit"  # the checkpoint's own
    sb3 = DreamSB3VecEnv.from_checkpoint(pong_checkpoint, 2, device="cpu", sampler_start="sigma_max")
    assert sb3.core.model.config.sampler.start == "sigma_max"


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
    staggered = rollout(model, states=2)  # two reward/termination states a dream, captured too
    assert (staggered[0] - got[0]).abs().max() <= LEVEL + 1e-6  # another graph: its kernels may sum otherwise
    assert torch.equal(rollout(model, states=2)[0], staggered[0])


def test_cpu_default_precision_follows_native_bf16_units(monkeypatch, caplog):
    import logging

    from gym_diamond import acceleration
    from gym_diamond.acceleration import CPU_PRECISION_VARIABLE, cpu_bf16_units, default_precision

    monkeypatch.delenv(CPU_PRECISION_VARIABLE, raising=False)
    monkeypatch.setattr(acceleration, "_logged", set())
    for amx, avx512_bf16, units, expected in [(True, True, "AMX-BF16", "bf16"), (False, True, "AVX-512 BF16", "bf16"),
                                              (False, False, None, "fp32")]:
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        assert cpu_bf16_units() == units
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="gym_diamond"):
            assert Acceleration.default_for("cpu") == Acceleration(precision=expected, channels_last=True)
        assert f"{expected} dreams on cpu" in caplog.text  # the choice is logged
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "bf16")  # overridable without code
    assert default_precision("cpu") == "bf16"
    monkeypatch.setenv(CPU_PRECISION_VARIABLE, "fp16")
    with pytest.raises(ValueError, match="GYM_DIAMOND_CPU_PRECISION='fp16'"):
        default_precision("cpu")


def test_dreams_and_pipeline_take_the_capability_default(monkeypatch, pong_checkpoint, tmp_path):
    import gymnasium as gym

    from gym_diamond.acceleration import CPU_PRECISION_VARIABLE
    from training.pipeline import Pipeline

    monkeypatch.delenv(CPU_PRECISION_VARIABLE, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    env = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu")
    assert env.unwrapped.core.model.acceleration.precision == "bf16"
    env.reset(seed=0)
    env.step(0)  # a bf16 dream steps (the reward/termination LSTM stays fp32)
    explicit = gym.make("DiamondDream/Pong-v0", checkpoint=pong_checkpoint, device="cpu", precision="fp32")
    assert explicit.unwrapped.core.model.acceleration.precision == "fp32"
    pipeline = Pipeline("Breakout", tmp_path / "run", "micro", device="cpu", progress=False)
    assert pipeline.precision == "fp32"  # the networks train in fp32 (bf16 training cost fidelity)
    assert pipeline.world_model.acceleration.precision == "fp32"  # the agent's dream too, as DIAMOND's
    bf16 = Pipeline("Breakout", tmp_path / "run2", "micro", device="cpu", progress=False, dream_precision="bf16")
    assert bf16.world_model.acceleration.precision == "bf16"
    pipeline.close()
    bf16.close()


def test_bf16_asked_for_on_a_cpu_that_would_emulate_it_warns_of_the_cost(monkeypatch):
    import warnings

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    with pytest.warns(UserWarning, match="emulates it, about 9x slower than fp32"):
        Acceleration(precision="bf16").check_device("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Acceleration(precision="bf16").check_device("cpu")  # native units: no warning
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
        Acceleration(precision="fp32").check_device("cpu")  # fp32 never warns
