"""Our imagination trainer trains DIAMOND's actor-critic in a world model's dreams as DIAMOND's code does.

``tests/data/diamond/world_model_env.safetensors`` (made by ``make_world_model_env_fixture.py`` beside it, with
DIAMOND's unmodified code): DIAMOND's own ``WorldModelEnv`` (``src/envs/world_model_env.py``: start contexts
preloaded from a dataset with the reward/termination LSTM burnt in, its diffusion sampler, sampled rewards and
terminations, truncation after ``horizon`` steps of an episode's own) and env loop (``src/coroutines/env_loop.py``)
with a tiny world model, and 4 updates of a tiny actor-critic as its ``Trainer.train_component`` makes them
(``src/trainer.py``; ``configure_opt`` and ``get_lr_sched`` of ``src/utils.py``: AdamW with weight decay 0,
warm-up, the gradient norm clipped at 100, which binds on updates 1 and 4 and not on 2 and 3). Here the same
weights (``training.diamond.format.from_diamond``) and episodes go through our ``ImaginationTrainer`` as the
pipeline builds it (``PreloadedStarts``, ``WorldModelEnv``, ``EnvLoop``, ``trainer.step``, with
``ImaginationConfig``'s defaults for the learning rate, eps and clip and the trainer's own weight decay), with
DIAMOND's draws replayed: its start segments, the sampler's noise, its reward and termination samples and its
actions. The dreams, rollouts, losses, gradient norms and the parameters after every update must agree, so
another weight decay, clip or learning rate by default, another warm-up rule, or restarts, burn-ins or
truncations other than DIAMOND's fail here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
import torch
from helpers import DATA
from safetensors import safe_open
from safetensors.torch import load_file
from torch import Tensor

import gym_diamond.world_model
from gym_diamond.config import SamplerConfig
from training.agents.imagination import ImaginationConfig, ImaginationTrainer, Rollout
from training.agents.losses import lambda_returns
from training.data.dataset import Episode, EpisodeDataset
from training.diamond.format import diamond_keys, from_diamond

FIXTURE = DATA / "diamond" / "world_model_env.safetensors"
LOSS_TERMS = {"total": "loss_total", "policy": "loss_actions", "value": "loss_values", "entropy": "loss_entropy"}
# Largest differences from DIAMOND's fixture (made on an AVX-512 CPU with torch 2.13, one thread), measured with
# this machine's default kernels (AVX-512), with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and with
# ATEN_CPU_CAPABILITY=default; each tolerance is about 10x the largest:
# - policy logits, values, value bootstraps, lambda-returns, reward/termination logits and gradient norms, each
#   relative to DIAMOND's largest |value|: 1.7e-6 (AVX-512), 2.1e-6 (AVX2), 2.0e-6 (default)
ROLLOUT_TOL = 2e-5
# - loss terms, relative: 8.5e-7 (AVX-512), 4.1e-6 (AVX2), 3.2e-6 (default); the policy term, a mean of signed
#   terms, has the largest
LOSS_TOL = 4e-5
# - parameters after each update: 1.5e-8 under all three (a rounding step of a weight of ~0.2). For scale, after
#   the second update (the first at a learning rate above 0) weight decay 1e-2 instead of 0 moves them by 4.8e-6
#   (2.4e-5 after the fourth), a clip of 10 instead of 100 by 1.6e-5, a clip of 1000 by 5.9e-6
PARAM_TOL = 1.5e-7
# - imagined frames: the same uint8 levels under all three (the denoiser's output convolution is tiny, so that
#   rounding differences of its output do not move a level; see make_world_model_env_fixture.py). On an Intel Xeon
#   with AVX-512 and AMX (oneDNN's AVX-512 kernels there; limited to AVX2 it gives the fixture's levels) one level of
#   one of the 45 frames of the second update moves by one (118 -> 119), which moves that update's policy logits,
#   values and lambda-returns by 1.2e-4-3.6e-4 and the reward logits by 8e-4, while its actions, rewards and
#   terminations stay DIAMOND's and the parameters stay within PARAM_TOL. So an update may move at most one level
#   by one, and where it does its rollout figures are held to 10x those
MOVED_LEVELS = 1
MOVED_LEVEL_TOL = 1e-2
FRAME_LEVELS = 3 * 64 * 64  # the levels of one frame


# ------------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def data() -> dict[str, Tensor]:
    return load_file(FIXTURE)


@pytest.fixture(scope="module")
def settings() -> dict[str, Any]:
    with safe_open(FIXTURE, "pt") as f:
        return json.loads(f.metadata()["settings"])


@pytest.fixture(scope="module")
def dataset(data: dict[str, Tensor], tmp_path_factory: pytest.TempPathFactory) -> EpisodeDataset:
    """The fixture's toy episodes in one of our datasets."""
    ds = EpisodeDataset(tmp_path_factory.mktemp("toy"), compress=False)
    i = 0
    while f"episode{i}/frames" in data:
        e = {k: data[f"episode{i}/{k}"].numpy() for k in ("frames", "actions", "rewards", "terminated", "truncated")}
        ds.append(Episode(frames=e["frames"], actions=e["actions"].astype(np.int64),
                          rewards=e["rewards"].astype(np.float32), terminated=e["terminated"],
                          truncated=e["truncated"], life_loss=np.zeros_like(e["terminated"])))
        i += 1
    return ds


# -------------------------------------------------------------------------------------------------- replay


@dataclass
class Run:
    """What our trainer computed, update by update, and the draws of DIAMOND's it has not taken."""

    rollouts: list[Rollout] = field(default_factory=list)
    logs: list[dict[str, float]] = field(default_factory=list)
    lrs: list[float] = field(default_factory=list)
    params: list[dict[str, Tensor]] = field(default_factory=list)  # by DIAMOND's key, after each update
    seen: list[Tensor] = field(default_factory=list)  # each observation the env handed to the actor-critic
    imagined: list[Tensor] = field(default_factory=list)  # each frame the world model imagined
    step_logits: list[tuple[Tensor, Tensor]] = field(default_factory=list)  # (reward, termination) per step
    noise: list[Tensor] = field(default_factory=list)
    left: dict[str, Iterator[Any]] = field(default_factory=dict)  # DIAMOND's draws still to replay


def take(run: Run, what: str) -> Any:
    value = next(run.left[what], None)
    assert value is not None, f"our trainer drew more {what} than DIAMOND did"
    return value


def replay_diamonds_draws(trainer: ImaginationTrainer, data: dict[str, Tensor], settings: dict[str, Any], run: Run,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``trainer`` draw what DIAMOND drew: start segments, sampler noise, reward/termination classes, actions."""
    steps = [(k, t) for k in range(settings["updates"]) for t in range(settings["loss"]["backup_every"])]
    run.left = {
        "start batches": zip(data["start_episode"].numpy(), data["start_first"].numpy(), strict=True),
        # Categorical(logits).sample() of each step in DIAMOND's WorldModelEnv.predict_rew_end: reward, termination
        "reward/termination samples": iter([c for k, t in steps for c in (data[f"update{k}_rewards"][:, t].long() + 1,
                                                                          data[f"update{k}_end"][:, t].long())]),
        "actions": iter([data[f"update{k}_actions"][:, t] for k, t in steps]),
    }
    noise_rng = np.random.default_rng(settings["noise_seed"])  # the fixture's stand-in for torch.randn

    def sampler_noise(shape: tuple[int, ...], config: SamplerConfig, generator: Any, device: Any) -> list[Tensor]:
        assert config.s_churn == 0  # the start noise only, as DIAMOND's sampler draws without churn
        run.noise.append(torch.from_numpy(noise_rng.standard_normal(shape, dtype=np.float32)).to(device))
        return [run.noise[-1]]

    pending: list[Tensor] = []

    def sample_categorical(logits: Tensor, uniform: Tensor) -> Tensor:
        pending.append(logits.detach().clone())
        if len(pending) == 2:
            run.step_logits.append((pending[0], pending[1]))
            pending.clear()
        return take(run, "reward/termination samples")

    def sample_positions(batch_size: int, num_frames: int, rng: np.random.Generator, *,
                         sample_weights: tuple[float, ...] | None = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        assert (batch_size, num_frames, sample_weights) == (settings["num_envs"], settings["context"],
                                                            tuple(settings["sample_weights"])) and not kwargs
        ids, firsts = take(run, "start batches")
        return ids.copy(), firsts.copy()

    monkeypatch.setattr(gym_diamond.world_model, "sampler_noise", sampler_noise)
    monkeypatch.setattr(gym_diamond.world_model, "sample_categorical", sample_categorical)
    trainer.env.starts.sampler.sample_positions = sample_positions
    trainer.loop.sample_actions = lambda logits: take(run, "actions")


def watch(trainer: ImaginationTrainer, run: Run) -> None:
    """Keep the frames the dreams imagined and handed out, and every rollout."""
    world_model, env, loop = trainer.world_model, trainer.env, trainer.loop
    imagine_step, env_reset, env_step, rollout = world_model.imagine_step, env.reset, env.step, loop.rollout

    def imagine(*args: Any, **kwargs: Any) -> Any:
        out = imagine_step(*args, **kwargs)
        run.imagined.append(out.next_frame.clone())
        return out

    def reset() -> tuple[Tensor, dict]:
        obs, info = env_reset()
        run.seen.append(obs.clone())
        return obs, info

    def step(actions: Tensor) -> tuple[Tensor, ...]:
        out = env_step(actions)
        run.seen.append(out[0].clone())
        return out

    def keep_rollout(num_steps: int) -> Rollout:
        run.rollouts.append(rollout(num_steps))
        return run.rollouts[-1]

    world_model.imagine_step, env.reset, env.step, loop.rollout = imagine, reset, step, keep_rollout


@pytest.fixture(scope="module")
def run(data: dict[str, Tensor], settings: dict[str, Any], dataset: EpisodeDataset) -> Run:
    """Our ``ImaginationTrainer`` from DIAMOND's weights, ``updates`` steps on DIAMOND's draws (one thread, as the
    fixture was made; other test runs share this machine's cores)."""
    weights = {k.removeprefix("weights/"): v for k, v in data.items() if k.startswith("weights/")}
    world_model, actor_critic = from_diamond(weights, FIXTURE.name, num_actions=settings["num_actions"])
    keys = {ours.removeprefix("actor_critic."): theirs for ours, theirs in
            diamond_keys(world_model, actor_critic).items() if ours.startswith("actor_critic.")}
    # DIAMOND's settings of the fixture; the optimiser's (lr, eps, clip, weight decay) are our defaults
    config = ImaginationConfig(horizon=settings["horizon"], backup_every=settings["loss"]["backup_every"],
                               batch_size=settings["num_envs"],
                               num_batches_to_preload=settings["num_batches_to_preload"],
                               sample_weights=tuple(settings["sample_weights"]), warmup_steps=settings["warmup"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    out = Run()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            trainer = ImaginationTrainer(world_model, actor_critic, dataset, config, seed=0)
            replay_diamonds_draws(trainer, data, settings, out, monkeypatch)
            watch(trainer, out)
            for _ in range(settings["updates"]):
                out.logs.append(trainer.step())
                out.lrs.append(trainer.optimizer.param_groups[0]["lr"])
                out.params.append({keys[k]: p.detach().clone() for k, p in actor_critic.named_parameters()})
    finally:
        torch.set_num_threads(threads)
    return out


# ------------------------------------------------------------------------------------------------ comparison


def levels(frames: Tensor) -> Tensor:
    """The fixture's digest of frames (..., c, h, w) in [-1, 1]: the sum and sum of squares of their uint8 levels."""
    u8 = frames.add(1).mul(127.5).round().clamp(0, 255).long().flatten(-3)
    return torch.stack([u8.sum(-1), u8.square().sum(-1)], dim=-1)


def rel_error(ours: Tensor | float, theirs: Tensor) -> float:
    """max |ours - DIAMOND's| over DIAMOND's largest |value|."""
    ours = torch.as_tensor(ours).detach().double()
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    return ((ours - theirs.double()).abs().max() / theirs.double().abs().max()).item()


def diamond_bootstrap(rollout: Rollout) -> Tensor:
    """DIAMOND's ``val_bootstrap`` (n, H) of our rollout: the next step's value, the final observation's where an
    episode ended, the bootstrap after the last step."""
    out = torch.cat([rollout.values[:, 1:].detach(), rollout.bootstrap[:, None]], dim=1)
    dead = rollout.terminated | rollout.truncated
    out[dead] = rollout.final_values[dead]
    return out


def per_update(run: Run, settings: dict[str, Any], k: int) -> dict[str, Tensor]:
    """Our steps of update ``k``, stacked as the fixture stores DIAMOND's: (n, H, ...)."""
    steps = slice(k * settings["loss"]["backup_every"], (k + 1) * settings["loss"]["backup_every"])
    return {"obs_levels": levels(torch.stack(run.seen[steps], dim=1)),
            "next_obs_levels": levels(torch.stack(run.imagined[steps], dim=1)),
            "logits_rew": torch.stack([r for r, _ in run.step_logits[steps]], dim=1),
            "logits_end": torch.stack([e for _, e in run.step_logits[steps]], dim=1)}


def moved_levels(data: dict[str, Tensor], settings: dict[str, Any], run: Run, k: int) -> int:
    """How many uint8 levels of update ``k``'s frames (imagined, and those the actor-critic saw) moved from
    DIAMOND's, read off each frame's sum and sum of squares of its levels: a level moved by one changes the sum by
    one; a sum of squares that differs with equal sums (levels traded) counts as two; any other difference counts
    as every level of the frame. The larger count of the imagined frames and the frames seen."""
    ours, moved = per_update(run, settings, k), []
    for name in ("next_obs_levels", "obs_levels"):  # the frames seen are mostly the frames imagined: the larger
        sums, squares = (ours[name] - data[f"update{k}_{name}"]).abs().unbind(-1)
        by_one = int(torch.where(sums > 1, sums.new_tensor(FRAME_LEVELS), sums).sum())
        moved.append(by_one + 2 * int(((sums == 0) & (squares > 0)).sum()))
    return max(moved)


def rollout_errors(data: dict[str, Tensor], settings: dict[str, Any], run: Run, k: int) -> dict[str, float]:
    """The relative errors of update ``k``'s rollout, lambda-returns, loss terms and gradient norm."""
    rollout, steps, theirs = run.rollouts[k], per_update(run, settings, k), lambda name: data[f"update{k}_{name}"]
    loss = settings["loss"]
    returns = lambda_returns(rollout.rewards.sign(), rollout.values.detach(), rollout.terminated, rollout.truncated,
                             rollout.bootstrap, loss["gamma"], loss["lambda_"], final_values=rollout.final_values)
    errors = {"logits": rel_error(rollout.logits, theirs("logits")),
              "values": rel_error(rollout.values, theirs("values")),
              "val_bootstrap": rel_error(diamond_bootstrap(rollout), theirs("val_bootstrap")),
              "lambda_returns": rel_error(returns, theirs("lambda_returns")),
              "logits_rew": rel_error(steps["logits_rew"], theirs("logits_rew")),
              "logits_end": rel_error(steps["logits_end"], theirs("logits_end")),
              "grad_norm": rel_error(run.logs[k]["ac_grad_norm"], theirs("grad_norm"))}
    errors.update({name: rel_error(run.logs[k][ours], theirs(name)) for ours, name in LOSS_TERMS.items()})
    return errors


def param_errors(data: dict[str, Tensor], run: Run, k: int) -> dict[str, float]:
    """max |ours - DIAMOND's| of every parameter after update ``k``."""
    prefix = f"update{k}_after/"
    theirs = {key.removeprefix(prefix): v for key, v in data.items() if key.startswith(prefix)}
    assert set(theirs) == set(run.params[k])
    return {key: (run.params[k][key].double() - v.double()).abs().max().item() for key, v in theirs.items()}


# ------------------------------------------------------------------------------------------------------ tests


def test_the_fixture_dreams_every_case(data, settings):
    """The recorded dreams hold what the comparison must cover: terminations, truncations, both on one step,
    several dreams restarting at once, start contexts padded before an episode's start, a preloaded group whose
    rest is dropped because a request does not fit in it, and a clip that binds on some updates and not on
    others (AdamW is blind to a gradient scale shared by all updates)."""
    updates = range(settings["updates"])
    end = torch.cat([data[f"update{k}_end"] for k in updates], dim=1)
    trunc = torch.cat([data[f"update{k}_trunc"] for k in updates], dim=1)
    assert end.any() and trunc.any() and (end & trunc).any()
    restarts = (end | trunc).sum(0)
    assert restarts.max() > 1
    assert (data["start_first"] < 0).any()
    group, left, dropped = settings["num_envs"] * settings["num_batches_to_preload"], 0, 0
    for n in [settings["num_envs"], *restarts[restarts > 0].tolist()]:  # the reset, then each step's restarts
        if n > left:
            dropped, left = dropped + left, group
        left -= n
    assert dropped > 0
    norms = torch.stack([data[f"update{k}_grad_norm"] for k in updates])
    assert (norms > 1.2 * settings["max_grad_norm"]).any() and (norms < 0.8 * settings["max_grad_norm"]).any()
    lrs = [data[f"update{k}_lr"].item() for k in updates]
    assert lrs[0] == 0 and 0 < lrs[1] < lrs[2] == settings["optimizer"]["lr"]


def test_diamonds_draws_are_all_replayed(data, run):
    """Our trainer takes exactly DIAMOND's draws, no more and no fewer: start batches, noises, samples, actions."""
    for what, left in run.left.items():
        assert next(left, None) is None, f"our trainer drew fewer {what} than DIAMOND did"
    noise = torch.stack(run.noise).double().flatten(1)
    assert rel_error(noise.sum(1), data["noise_sum"]) <= 1e-12
    assert rel_error(noise.square().sum(1), data["noise_sumsq"]) <= 1e-12


def test_dreams_are_diamonds(data, settings, run):
    """Every imagined frame and every observation handed out (imagined, or a new start context's last frame)
    has DIAMOND's levels (up to ``MOVED_LEVELS`` moved by one per update, as one CPU kind's kernels round);
    actions, rewards, terminations and truncations are its."""
    for k, rollout in enumerate(run.rollouts):
        assert moved_levels(data, settings, run, k) <= MOVED_LEVELS, f"update {k + 1}"
        assert torch.equal(rollout.actions, data[f"update{k}_actions"])
        assert torch.equal(rollout.rewards, data[f"update{k}_rewards"])
        assert torch.equal(rollout.terminated, data[f"update{k}_end"].bool())
        assert torch.equal(rollout.truncated, data[f"update{k}_trunc"].bool()), f"update {k + 1}: truncations differ"


def test_rollouts_losses_and_gradient_norms_are_diamonds(data, settings, run):
    """Policy logits, values, value bootstraps (final observations included), lambda-returns, reward/termination
    logits, loss terms and gradient norms before clipping of every update are DIAMOND's."""
    errors = [rollout_errors(data, settings, run, k) for k in range(settings["updates"])]
    for k, e in enumerate(errors):
        print(f"[diamond world model env] update {k + 1}: " + ", ".join(f"{n} {v:.2g}" for n, v in e.items()))
    for k, e in enumerate(errors):
        moved = moved_levels(data, settings, run, k) > 0
        for name, value in e.items():
            tol = MOVED_LEVEL_TOL if moved else LOSS_TOL if name in LOSS_TERMS.values() else ROLLOUT_TOL
            assert value <= tol, f"update {k + 1}: {name} off by {value:.3g} (relative)"


def test_parameters_after_every_update_are_diamonds(data, settings, run):
    """AdamW in DIAMOND's groups with weight decay 0, its learning rate and warm-up, its clip at 100: the
    parameters after each update are DIAMOND's."""
    for k in range(settings["updates"]):
        assert run.lrs[k] == pytest.approx(data[f"update{k}_lr"].item(), rel=1e-12, abs=0)
    worst = [max(param_errors(data, run, k).items(), key=lambda item: item[1]) for k in range(settings["updates"])]
    for k, (name, value) in enumerate(worst):
        print(f"[diamond world model env] update {k + 1}: parameters off by {value:.2g} ({name})")
    for k, (name, value) in enumerate(worst):
        assert value <= PARAM_TOL, f"update {k + 1}: {name} off by {value:.3g}"
