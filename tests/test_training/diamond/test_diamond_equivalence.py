"""Our networks compute what DIAMOND's compute, given its weights (fixtures made with DIAMOND's code).

``tests/data/diamond/`` holds a small DIAMOND agent and its outputs on fixed inputs (see its README);
``tests/data/legacy_v1/`` a checkpoint from before the change, which must still compute what it did.
"""

import json

import pytest
import torch
from helpers import DATA
from safetensors.torch import load_file

from gym_diamond import load_checkpoint
from gym_diamond.config import WorldModelConfig
from gym_diamond.diffusion import integrate, karras_sigmas
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from gym_diamond.rng import BatchedGenerator
from training.diamond.format import from_diamond, to_diamond

LEVEL = 2 / 255  # one quantisation level of a frame in [-1, 1]


@pytest.fixture(scope="module")
def diamond():
    state = torch.load(DATA / "diamond" / "agent.pt", weights_only=True)
    world_model, actor_critic = from_diamond(state, "agent.pt", num_actions=6)
    return world_model, actor_critic, load_file(DATA / "diamond" / "io.safetensors")


def assert_within(ours: torch.Tensor, theirs: torch.Tensor, tol: float = 1e-5) -> None:
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() <= tol


def assert_frames_match(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """Within one quantisation level everywhere (a value on a truncation boundary), equal on >= 99%."""
    diff = (ours - theirs).abs()
    assert diff.max().item() <= LEVEL + 1e-6
    assert (diff < 1e-6).float().mean().item() >= 0.99


@torch.no_grad()
def test_denoiser_output_and_denoised_frame(diamond):
    world_model, _, io = diamond
    args = io["den_noisy"], io["den_sigma"], io["den_obs"], io["den_act"]
    assert_within(world_model.denoiser(*args), io["den_model_output"])
    assert_frames_match(world_model.denoiser.denoise(*args), io["den_denoised"])


@torch.no_grad()
def test_euler_sampler_trajectory(diamond):
    world_model, _, io = diamond
    config = world_model.config.sampler
    assert torch.equal(karras_sigmas(config), io["sampler_sigmas"])  # same float32 arithmetic
    trajectory = []

    def denoise(x, sigma):
        trajectory.append(x)
        return world_model.denoiser.denoise(x, sigma, io["den_obs"], io["den_act"])

    next_obs = integrate(denoise, [io["sampler_initial_noise"]], config)
    trajectory.append(next_obs)
    assert len(trajectory) == io["sampler_trajectory"].shape[1]
    for i, x in enumerate(trajectory):
        assert_frames_match(x, io["sampler_trajectory"][:, i])
    assert_frames_match(next_obs, io["sampler_next_obs"])


@torch.no_grad()
def test_reward_termination_logits_and_lstm_state(diamond):
    world_model, _, io = diamond
    out = world_model.rew_end(io["rew_obs"], io["rew_act"], io["rew_next_obs"])
    assert_within(out.reward_logits, io["rew_logits_rew"])
    assert_within(out.end_logits, io["rew_logits_end"])
    assert_within(out.state[0], io["rew_h"])
    assert_within(out.state[1], io["rew_c"])


@torch.no_grad()
def test_actor_critic_stepped_frame_by_frame(diamond):
    _, actor_critic, io = diamond
    state = actor_critic.initial_state(3)
    logits, values = [], []
    for t in range(io["ac_obs"].shape[1]):
        step_logits, value, state = actor_critic(io["ac_obs"][:, t], state)
        logits.append(step_logits)
        values.append(value)
    assert_within(torch.stack(logits, 1), io["ac_logits"])
    assert_within(torch.stack(values, 1), io["ac_values"])
    assert_within(state[0], io["ac_h"])
    assert_within(state[1], io["ac_c"])


@pytest.mark.parametrize("num_actions", [4, 6, 18])
def test_paper_layouts_import_completely(num_actions):
    layout = json.loads((DATA / "diamond" / f"layout_{num_actions}actions.json").read_text())
    generator = torch.Generator().manual_seed(num_actions)
    state = {key: torch.randn(shape, generator=generator) for key, shape in layout.items()}
    world_model, actor_critic = from_diamond(state, "layout", num_actions=num_actions)
    assert world_model.config == WorldModelConfig(num_actions=num_actions)
    assert actor_critic.config == ActorCriticConfig(num_actions=num_actions)
    back = to_diamond(world_model, actor_critic)  # every key used, each tensor where DIAMOND keeps it
    assert set(back) == set(state)
    assert all(torch.equal(back[key], state[key]) for key in state)


def test_paper_parameter_counts_equal_diamond():
    world_model, actor_critic = from_diamond(
        {k: torch.zeros(s) for k, s in json.loads((DATA / "diamond" / "layout_6actions.json").read_text()).items()},
        "layout", num_actions=6)
    counts = world_model.num_parameters()
    assert counts == {"denoiser": 4_406_083, "rew_end": 5_901_120}
    assert sum(p.numel() for p in actor_critic.parameters()) == 3_230_663
    assert sum(p.numel() for p in ActorCritic(ActorCriticConfig(num_actions=6)).parameters()) == 3_230_663


@torch.no_grad()
def test_version_1_checkpoint_computes_what_it_did():
    ckpt = load_checkpoint(DATA / "legacy_v1" / "Pong.safetensors")
    cfg = ckpt.config
    assert cfg.denoiser.unet.attention_residual == "input" and cfg.rew_end.attention_residual == "input"
    assert cfg.rew_end.norm_out and cfg.sampler.quantization == "round"
    ref = load_file(DATA / "legacy_v1" / "imagine_step.safetensors")
    frames = ref["frames"].permute(0, 1, 4, 2, 3).float().div(127.5).sub(1)
    step = ckpt.world_model.imagine_step(frames, ref["actions"], generator=BatchedGenerator(range(3)))
    next_frame = step.next_frame.add(1).mul(127.5).round().to(torch.uint8)
    assert (next_frame.int() - ref["next_frame"].int()).abs().max() <= 1
    assert (next_frame == ref["next_frame"]).float().mean() >= 0.99
    assert torch.equal(step.reward, ref["reward"]) and torch.equal(step.terminated, ref["terminated"].bool())
    # the LSTM state reads the quantised next frame, where a value on a rounding boundary may flip a level:
    # measured across CPU kinds (native AVX-512, ATEN_CPU_CAPABILITY=avx2 with ONEDNN_MAX_CPU_ISA=AVX2,
    # default; 1 and 2 threads) the state differs by up to 9.1e-5 (scale 1.2); a wrong network is off by 1e-1
    assert_within(step.state[0], ref["h"], tol=5e-4)
    assert_within(step.state[1], ref["c"], tol=5e-4)
