"""Record DIAMOND's actor-critic trained in its own world model's imagination: the oracle of
tests/test_training/diamond/test_diamond_world_model_env.py.

    python tests/data/diamond/make_world_model_env_fixture.py --diamond-src /tmp/diamond/src \
        --out tests/data/diamond/world_model_env.safetensors

Everything is DIAMOND's unmodified code (``src/``), fp32 on the CPU, one thread. Its ``WorldModelEnv``
(``src/envs/world_model_env.py``) dreams with a tiny ``Denoiser`` and ``RewEndModel`` (64x64 frames, the
actor-critic's size): start contexts drawn from toy episodes by its ``BatchSampler`` (recency weights
0.1/0.1/0.1/0.7, padding before an episode's start) through a ``DataLoader``, preloaded
``NUM_BATCHES_TO_PRELOAD`` batches at a time with the reward/termination LSTM burnt in on each; its
``DiffusionSampler`` (3 Euler steps, frames quantised to 256 levels); rewards and terminations sampled from
the reward/termination logits; truncation after ``HORIZON`` steps of an episode's own (not at the end of a
rollout: both can happen on one step). A tiny ``ActorCritic`` (``src/models/actor_critic.py``) runs its
``make_env_loop`` (``src/coroutines/env_loop.py``: value bootstraps on final observations, its LSTM zeroed and
burnt in on each new context) and is trained ``UPDATES`` times as ``Trainer.train_component``
(``src/trainer.py``) trains it, with ``configure_opt`` and ``get_lr_sched`` (``src/utils.py``) at the
actor-critic's settings of ``config/trainer.yaml`` (lr 1e-4, weight decay 0, eps 1e-8, max_grad_norm 100),
but a warm-up of ``WARMUP`` updates instead of 100 so that the learning rate is not ~0 in the updates recorded.

Every weight is moved off its initialisation so that no head is zero (``perturb``), with three choices:

- the critic head is scaled up (``CRITIC_SCALE``) so that the gradient norm before clipping exceeds 100 on
  some updates and not on others: AdamW is blind to a gradient scale shared by all updates, so only such a
  clip shows in the parameters (another clip, 10 or 1000, then does);
- the termination logit is pushed down (``END_SHIFT``) so that episodes also live long enough to be truncated;
- the denoiser's output convolution (its weights zero at DIAMOND's init) is moved by ``DENOISER_OUT_STD``
  only. A frame is quantised at each of its 3 denoising steps, and gym-diamond's U-Net computes DIAMOND's
  output up to rounding (~1e-7 relative): at the usual perturbation (0.05) that moved a level in about one
  imagined frame in ten, after which the dreams parted ways. At 2e-5 the network still moves levels in every
  frame (changing the oldest context frame moves 0.3% of them, the oldest action 0.03%), while a rounding
  difference is expected to move one in well under 1% of runs; the frames agree exactly on every CPU kernel
  measured (tests/test_training/diamond/test_diamond_world_model_env.py).

The draws are DIAMOND's, recorded for replay: the start segments its ``BatchSampler`` drew (numpy's global
stream), the actions and the reward/termination samples (torch's global stream). The sampler's Gaussian noise
comes from ``np.random.default_rng(NOISE_SEED).standard_normal`` (float32) instead of torch's global stream,
so that a test can draw the same noise without storing 2 MB of it: DIAMOND's code is unchanged, its
``torch.randn`` is answered from that stream while it samples.

Recorded: the toy episodes (``episode<i>/*``, gym-diamond's layout), the weights (``weights/<DIAMOND key>``),
the start segments (``start_episode``, ``start_first``: one row per batch drawn, in order), the noise's
per-draw sums (``noise_sum``, ``noise_sumsq``), and per update k (``update{k}_*``): the rollout as its env
loop yielded it (actions, rewards, ends, truncations, policy logits, values, value bootstraps), the
lambda-returns, the reward/termination logits of every imagined step, digests of the frames (the sum and the
sum of squares of their uint8 levels: ``obs_levels`` of those the actor-critic saw, ``next_obs_levels`` of
those the sampler made, final observations included), the loss terms, the learning rate, the gradient norm
before clipping and every parameter after the update (``update{k}_after/actor_critic.*``); the settings in
the metadata (JSON).

DIAMOND's package imports wandb, omegaconf, hydra and torcheval at import time, for training helpers none
of which runs here: when one is not installed, a tiny stand-in module takes its place.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diamond_stubs import stub_missing_modules  # sibling modules: a script's folder is on sys.path
from make_training_fixtures import accept_sampler_argument
from safetensors.torch import save_file
from torch.utils.data import DataLoader

SEED = 0  # numpy's, torch's and Python's global streams (starts; actions, rewards, ends) and the weights
NOISE_SEED = 1  # the sampler's Gaussian noise: np.random.default_rng(NOISE_SEED).standard_normal, float32
NUM_ACTIONS, CONTEXT, SIZE, CHANNELS = 4, 4, 64, 3  # the actor-critic needs 64x64 frames
LENGTHS = (3, 6, 2, 5, 4)  # the toy episodes' transitions, oldest first (2 < CONTEXT: padded contexts)
NUM_ENVS = 3  # actor_critic.training.batch_size: dreams side by side
NUM_BATCHES_TO_PRELOAD = 2  # world_model_env.num_batches_to_preload: groups of 6 start contexts
HORIZON = 6  # world_model_env.horizon (DIAMOND's 15): truncations inside the 15-step rollouts
SAMPLE_WEIGHTS = (0.1, 0.1, 0.1, 0.7)  # actor_critic.training.sample_weights (denoiser.training's)
SAMPLER = {"num_steps_denoising": 3, "sigma_min": 2e-3, "sigma_max": 5.0, "rho": 7, "order": 1, "s_churn": 0.0,
           "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0}  # world_model_env.diffusion_sampler
LOSS = {"backup_every": 15, "gamma": 0.985, "lambda_": 0.95, "weight_value_loss": 1.0,
        "weight_entropy_loss": 0.001}  # actor_critic.actor_critic_loss
OPTIMIZER = {"lr": 1e-4, "weight_decay": 0.0, "eps": 1e-8}  # actor_critic.optimizer
MAX_GRAD_NORM = 100.0  # actor_critic.training.max_grad_norm
WARMUP, UPDATES = 2, 4  # learning rates 0, lr / 2, lr, lr
# tiny networks, narrowest at 64x64 where they cost most (8 channels where attention needs a head of 8)
DENOISER_CONFIG = {"cond_channels": 16, "depths": [1, 1, 1], "channels": [4, 4, 8], "attn_depths": [0] * 3}
REW_END_CONFIG = {"lstm_dim": 16, "cond_channels": 16, "depths": [1, 1, 1, 1], "channels": [4, 4, 4, 8],
                  "attn_depths": [0] * 4}
ACTOR_CRITIC_CONFIG = {"lstm_dim": 16, "channels": [4, 4, 8, 8], "down": [1, 1, 1, 1]}
PERTURBATION = 0.05  # std of the noise added to every weight (0.3 for the actor-critic's heads)
DENOISER_OUT_STD = 2e-5  # that of the denoiser's output convolution: see the module docstring
CRITIC_SCALE = 9.0  # the critic head's weights times this: gradient norms 127, 53, 37, 166 (clip 100)
END_SHIFT = -5.0  # added to the termination logit's weights (rew_end_model.head.2.weight[4])


# ------------------------------------------------------------------------------------------- toy data


def toy_episodes(generator: torch.Generator) -> list[dict[str, torch.Tensor]]:
    """Episodes in gym-diamond's layout: uint8 frames (T + 1, h, w, c), the frame after the last action included."""
    episodes = []
    for T in LENGTHS:
        episodes.append({
            "frames": torch.randint(0, 256, (T + 1, SIZE, SIZE, CHANNELS), generator=generator, dtype=torch.uint8),
            "actions": torch.randint(0, NUM_ACTIONS, (T,), generator=generator),
            "rewards": torch.randint(-1, 2, (T,), generator=generator).float(),
            "terminated": torch.zeros(T, dtype=torch.bool),
            "truncated": torch.zeros(T, dtype=torch.bool),
        })
    return episodes


def to_diamond_frames(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., h, w, c) -> DIAMOND's float (..., c, h, w) frames, with its arithmetic (``src/data/episode.py``)."""
    return u8.div(255).mul(2).sub(1).movedim(-1, -3).contiguous()


def diamond_dataset(episodes: list[dict[str, torch.Tensor]], directory: Path) -> Any:
    """DIAMOND's ``Dataset`` of the toy episodes (kept in memory): T observations each, as its collector stores
    an episode (the frame after the last action is not an observation)."""
    from data import Dataset, Episode  # noqa: PLC0415  (DIAMOND's package, importable once its path is set)

    dataset = Dataset(directory, "train_dataset", cache_in_ram=True, save_on_disk=False)
    for e in episodes:
        T = len(e["actions"])
        dataset.add_episode(Episode(obs=to_diamond_frames(e["frames"][:T]), act=e["actions"].clone(),
                                    rew=e["rewards"].clone(), end=e["terminated"].to(torch.uint8),
                                    trunc=e["truncated"].to(torch.uint8), info={}))
    return dataset


# ---------------------------------------------------------------------------------------------- networks


def build_networks(generator: torch.Generator) -> tuple[torch.nn.Module, torch.nn.Module, torch.nn.Module]:
    """DIAMOND's denoiser, reward/termination model and actor-critic, every weight moved off its initialisation."""
    from models.actor_critic import ActorCritic, ActorCriticConfig  # noqa: PLC0415
    from models.diffusion import Denoiser, DenoiserConfig, InnerModelConfig  # noqa: PLC0415
    from models.rew_end_model import RewEndModel, RewEndModelConfig  # noqa: PLC0415

    inner = InnerModelConfig(img_channels=CHANNELS, num_steps_conditioning=CONTEXT, num_actions=NUM_ACTIONS,
                             **DENOISER_CONFIG)
    denoiser = Denoiser(DenoiserConfig(inner_model=inner, sigma_data=0.5, sigma_offset_noise=0.3))
    rew_end = RewEndModel(RewEndModelConfig(img_channels=CHANNELS, img_size=SIZE, num_actions=NUM_ACTIONS,
                                            **REW_END_CONFIG))
    actor_critic = ActorCritic(ActorCriticConfig(img_channels=CHANNELS, img_size=SIZE, num_actions=NUM_ACTIONS,
                                                 **ACTOR_CRITIC_CONFIG))
    perturb(denoiser, rew_end, actor_critic, generator)
    return denoiser, rew_end, actor_critic


def perturb(denoiser: torch.nn.Module, rew_end: torch.nn.Module, actor_critic: torch.nn.Module,
            generator: torch.Generator) -> None:
    """Move every parameter off its initialisation (no zero head hides a computation), as the module docstring says."""
    with torch.no_grad():
        for model in (denoiser, rew_end, actor_critic):
            for name, p in model.named_parameters():
                scale = 0.3 if name.startswith(("actor_linear", "critic_linear")) else PERTURBATION
                scale = DENOISER_OUT_STD if name.startswith("inner_model.conv_out") else scale
                p.add_(scale * torch.randn(p.shape, generator=generator))
        actor_critic.critic_linear.weight.mul_(CRITIC_SCALE)
        rew_end.head[2].weight[4].add_(END_SHIFT)


# ---------------------------------------------------------------------------------------- recording


class Recorder:
    """What DIAMOND's ``WorldModelEnv`` and env loop drew and computed, kept as they ran."""

    def __init__(self) -> None:
        self.segments: list[list[Any]] = []  # each batch of start segments its BatchSampler drew
        self.noise: list[torch.Tensor] = []  # each Gaussian noise its sampler started from
        self.next_obs: list[torch.Tensor] = []  # the levels of each frame it sampled, (n, 2)
        self.step_logits: list[tuple[torch.Tensor, torch.Tensor]] = []  # (reward, termination) of each step
        self.loop_outputs: list[tuple] = []  # what each send of the env loop yielded
        self._in_step = False

    def segments_of(self, sample: Callable[[], list[Any]]) -> Callable[[], list[Any]]:
        def sample_and_keep() -> list[Any]:
            segments = sample()
            self.segments.append(segments)
            return segments
        return sample_and_keep

    def noise_from(self, predict_next_obs: Callable[[], Any], rng: np.random.Generator) -> Callable[[], Any]:
        """``predict_next_obs`` with its ``torch.randn(b, c, h, w)`` answered from ``rng`` (float32)."""
        def predict() -> Any:
            randn = torch.randn

            def numpy_randn(*size: int, device: torch.device | None = None) -> torch.Tensor:
                noise = torch.from_numpy(rng.standard_normal(size, dtype=np.float32)).to(device)
                self.noise.append(noise.clone())
                return noise

            torch.randn = numpy_randn
            try:
                next_obs, trajectory = predict_next_obs()
            finally:
                torch.randn = randn
            self.next_obs.append(levels(next_obs))
            return next_obs, trajectory
        return predict

    def step_logits_of(self, env: Any) -> None:
        """Keep the reward/termination logits of the imagined steps (not those of the start contexts' burn-in)."""
        model, predict_rew_end = env.rew_end_model, env.predict_rew_end
        predict = model.predict_rew_end

        def predict_and_keep(*args: Any, **kwargs: Any) -> Any:
            out = predict(*args, **kwargs)
            if self._in_step:
                self.step_logits.append((out[0].detach().clone(), out[1].detach().clone()))
            return out

        def step_rew_end(next_obs: torch.Tensor) -> Any:
            self._in_step = True
            try:
                return predict_rew_end(next_obs)
            finally:
                self._in_step = False

        model.predict_rew_end = predict_and_keep
        env.predict_rew_end = step_rew_end

    def loop(self, loop: Any) -> Any:
        recorder = self

        class RecordingLoop:
            def send(self, num_steps: int) -> tuple:
                out = loop.send(num_steps)
                recorder.loop_outputs.append(out)
                return out
        return RecordingLoop()


def levels(frames: torch.Tensor) -> torch.Tensor:
    """Per frame (..., c, h, w) in [-1, 1]: the sum and the sum of squares of its uint8 levels, int64 (..., 2)."""
    u8 = frames.add(1).mul(127.5).round().clamp(0, 255).long().flatten(-3)
    return torch.stack([u8.sum(-1), u8.square().sum(-1)], dim=-1)


def record(diamond_src: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Train DIAMOND's actor-critic ``UPDATES`` times in its world model's dreams; every tensor worth comparing."""
    stub_missing_modules()
    accept_sampler_argument()
    sys.path.insert(0, str(diamond_src))
    from data import BatchSampler, collate_segments_to_batch  # noqa: PLC0415
    from envs import WorldModelEnv, WorldModelEnvConfig  # noqa: PLC0415
    from models.actor_critic import ActorCriticLossConfig, compute_lambda_returns  # noqa: PLC0415
    from models.diffusion import DiffusionSamplerConfig  # noqa: PLC0415
    from utils import configure_opt, get_lr_sched  # noqa: PLC0415

    torch.manual_seed(SEED)  # the initialisations
    generator = torch.Generator().manual_seed(SEED)
    denoiser, rew_end, actor_critic = build_networks(generator)
    episodes = toy_episodes(generator)
    out: dict[str, torch.Tensor] = {f"episode{i}/{k}": v for i, e in enumerate(episodes) for k, v in e.items()}
    for prefix, model in (("denoiser", denoiser), ("rew_end_model", rew_end), ("actor_critic", actor_critic)):
        out.update({f"weights/{prefix}.{k}": v.clone() for k, v in model.state_dict().items()})

    np.random.seed(SEED)
    torch.manual_seed(SEED)
    random.seed(SEED)
    recorder = Recorder()
    with tempfile.TemporaryDirectory() as directory:
        dataset = diamond_dataset(episodes, Path(directory))
        batch_sampler = BatchSampler(dataset, 0, 1, NUM_ENVS, CONTEXT, list(SAMPLE_WEIGHTS))
        batch_sampler.sample = recorder.segments_of(batch_sampler.sample)
        loader = DataLoader(dataset, batch_sampler=batch_sampler, collate_fn=collate_segments_to_batch)
        env = WorldModelEnv(denoiser, rew_end, loader,
                            WorldModelEnvConfig(HORIZON, NUM_BATCHES_TO_PRELOAD, DiffusionSamplerConfig(**SAMPLER)))
        env.predict_next_obs = recorder.noise_from(env.predict_next_obs, np.random.default_rng(NOISE_SEED))
        recorder.step_logits_of(env)
        loss_config = ActorCriticLossConfig(**LOSS)
        actor_critic.setup_training(env, loss_config)
        actor_critic.env_loop = recorder.loop(actor_critic.env_loop)

        # Trainer.train_component("actor_critic", UPDATES), after Trainer.train_agent's zero_grad
        opt = configure_opt(actor_critic, **OPTIMIZER)
        lr_sched = get_lr_sched(opt, WARMUP)
        for model in (denoiser, rew_end, actor_critic):
            model.train()
        opt.zero_grad()
        for k in range(UPDATES):
            steps_before = len(recorder.step_logits)
            loss, metrics = actor_critic()
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(actor_critic.parameters(), MAX_GRAD_NORM)
            opt.step()
            opt.zero_grad()
            lr = lr_sched.get_last_lr()[0]
            lr_sched.step()

            all_obs, act, rew, end, trunc, logits_act, val, val_bootstrap, _ = recorder.loop_outputs[-1]
            returns = compute_lambda_returns(rew, end, trunc, val_bootstrap, loss_config.gamma, loss_config.lambda_)
            step_logits, next_obs = recorder.step_logits[steps_before:], recorder.next_obs[steps_before:]
            assert len(step_logits) == len(next_obs) == LOSS["backup_every"]
            out.update({f"update{k}_{name}": v.detach().clone() for name, v in {
                "actions": act, "rewards": rew, "end": end, "trunc": trunc, "logits": logits_act, "values": val,
                "val_bootstrap": val_bootstrap, "lambda_returns": returns, "obs_levels": levels(all_obs),
                "next_obs_levels": torch.stack(next_obs, dim=1),
                "logits_rew": torch.cat([r for r, _ in step_logits], dim=1),
                "logits_end": torch.cat([e for _, e in step_logits], dim=1),
                "grad_norm": grad_norm, "lr": torch.tensor(lr, dtype=torch.float64), **metrics}.items()})
            out.update({f"update{k}_after/actor_critic.{name}": p.detach().clone()
                        for name, p in actor_critic.named_parameters()})

    out["start_episode"] = torch.tensor([[int(s.episode_id) for s in batch] for batch in recorder.segments])
    out["start_first"] = torch.tensor([[int(s.start) for s in batch] for batch in recorder.segments])
    assert all(s.stop - s.start == CONTEXT for batch in recorder.segments for s in batch)
    noise = torch.stack(recorder.noise).double()
    out["noise_sum"], out["noise_sumsq"] = noise.flatten(1).sum(1), noise.square().flatten(1).sum(1)
    settings = {"seed": SEED, "noise_seed": NOISE_SEED, "num_actions": NUM_ACTIONS, "context": CONTEXT,
                "lengths": LENGTHS, "num_envs": NUM_ENVS, "num_batches_to_preload": NUM_BATCHES_TO_PRELOAD,
                "horizon": HORIZON, "sample_weights": SAMPLE_WEIGHTS, "sampler": SAMPLER, "loss": LOSS,
                "optimizer": OPTIMIZER, "max_grad_norm": MAX_GRAD_NORM, "warmup": WARMUP, "updates": UPDATES,
                "denoiser": DENOISER_CONFIG, "rew_end": REW_END_CONFIG, "actor_critic": ACTOR_CRITIC_CONFIG,
                "perturbation": PERTURBATION, "denoiser_out_std": DENOISER_OUT_STD, "critic_scale": CRITIC_SCALE,
                "end_shift": END_SHIFT}
    metadata = {"made_by": "tests/data/diamond/make_world_model_env_fixture.py", "torch": torch.__version__,
                "numpy": np.__version__, "settings": json.dumps(settings)}
    return {k: v.contiguous() for k, v in out.items()}, metadata


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diamond-src", required=True, type=Path, help="the src folder of a DIAMOND checkout")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if not (args.diamond_src / "envs" / "world_model_env.py").exists():
        raise SystemExit(f"{args.diamond_src} is not DIAMOND's src folder (no envs/world_model_env.py)")
    torch.set_num_threads(1)
    tensors, metadata = record(args.diamond_src.resolve())
    save_file(tensors, str(args.out), metadata=metadata)
    for k in range(UPDATES):
        ends = int(tensors[f"update{k}_end"].sum()), int(tensors[f"update{k}_trunc"].sum())
        both = int((tensors[f"update{k}_end"] & tensors[f"update{k}_trunc"]).sum())
        print(f"update {k}: lr {tensors[f'update{k}_lr'].item():.2g}, grad norm before clipping "
              f"{tensors[f'update{k}_grad_norm'].item():.2f}, loss {tensors[f'update{k}_loss_total'].item():.5f}, "
              f"terminations {ends[0]}, truncations {ends[1]} (both on one step: {both}), "
              f"rewards {tensors[f'update{k}_rewards'].unique().tolist()}")
    print(f"{len(tensors['start_episode'])} start batches drawn, {len(tensors['noise_sum'])} noise draws")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
