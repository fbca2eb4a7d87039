"""Train DIAMOND's actor-critic in imagination, as DIAMOND's code does.

The parts are DIAMOND's, one class each:

- :class:`PreloadedStarts` (its ``WorldModelEnv.make_generator_init``, ``src/envs/world_model_env.py``):
  start contexts of L frames and their actions, drawn from the dataset in groups of
  ``num_batches_to_preload`` batches with the dataset's recency weights, the reward/termination model's
  LSTM burnt in on each at preload time; they are handed out in order, and when a request does not fit
  in what is left of a group, the rest is dropped and a new group is drawn.
- :class:`WorldModelEnv` (its ``WorldModelEnv``): ``batch_size`` dreams. An imagined episode ends when
  the termination head says so, or is truncated after ``horizon`` steps of its own; ended dreams restart
  at once from the next start contexts, and ``info`` carries their final observations and the new
  contexts' first L-1 frames (``burnin_obs``).
- :class:`EnvLoop` (its ``make_env_loop``, ``src/coroutines/env_loop.py``): the dreams go on across
  updates; each update takes their next ``backup_every`` steps, the actor-critic's LSTM state carried
  over detached. When an episode ends, its value bootstrap is the value of its final observation (with
  the LSTM state that saw the episode), the LSTM state of its row is zeroed and burnt in on the new
  context's first L-1 frames *with gradient* (DIAMOND's env loop does this outside ``no_grad``, so the
  loss reaches through the burn-in). The very first contexts are not burnt in (DIAMOND's reset).
- :class:`ImaginationTrainer` (its ``ActorCritic.forward`` and ``Trainer.train_component``): the loss of
  ``training.agents.losses.rollout_loss`` on each rollout, then one AdamW step (no weight decay, linear
  warm-up from 0, gradient norm clipped at 100).

When the trainer is rebuilt from a saved state (a resumed run), the dreams start afresh, as DIAMOND's
trainer rebuilds its env loop on resume.

Data-parallel (``distributed`` of N ranks, training.runtime.distributed): each rank dreams its own
``batch_size`` rollouts from its own random streams, and DDP averages the gradients, so an update
learns from N x batch_size dreams. Rank 0's streams are those of a single process; the others
derive theirs from the seed, their rank and the update count, so a saved state resumes on any N.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gym_diamond import WorldModel, to_model_frames
from gym_diamond.acceleration import Acceleration
from gym_diamond.errors import UserError
from gym_diamond.nn.actor_critic import ActorCritic, LSTMState
from training.agents.losses import ActorCriticLosses, rollout_loss
from training.data.dataset import DIAMOND_SAMPLE_WEIGHTS, EpisodeDataset, check_sample_weights
from training.data.sampling import BatchSampler
from training.runtime.distributed import Distributed
from training.runtime.optim import adamw, optimizer_update, warmup_lr
from training.runtime.state import load_optimizer_state, optimizer_state, restore_rng, rng_state

__all__ = ["EnvLoop", "ImaginationConfig", "ImaginationTrainer", "PreloadedStarts", "Rollout", "WorldModelEnv",
           "imagination_loss"]

# Version of the imagination recipe in saved states: 2 is DIAMOND's env loop (dreams that go on across
# updates); states without it restarted every dream at every update.
IMAGINATION_RECIPE = 2

ActionSampler = Callable[[Tensor], Tensor]  # logits (n, k) -> actions (n,) int64


@dataclass(frozen=True)
class ImaginationConfig:
    """DIAMOND's settings (``config/trainer.yaml``: ``world_model_env``, ``actor_critic``); defaults are its."""

    horizon: int = 15  # world_model_env.horizon: an imagined episode is truncated after this many of its steps
    backup_every: int = 15  # actor_critic_loss.backup_every: imagined steps per update
    batch_size: int = 32  # dreams side by side
    num_batches_to_preload: int = 256  # world_model_env.num_batches_to_preload: start contexts drawn at once
    sample_weights: tuple[float, ...] | None = DIAMOND_SAMPLE_WEIGHTS  # the start contexts' recency groups
    lr: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    grad_clip: float = 100.0
    precision: str = "fp32"  # "bf16": autocast of the actor-critic's forward passes (the dream: WorldModel.accelerate)
    compile: bool = False  # torch.compile the actor-critic in place (the dream: WorldModel.accelerate)

    def run_settings(self) -> dict[str, Any]:
        """The fields that decide what the actor-critic learns (the speed switches left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ("precision", "compile")}

    def __post_init__(self) -> None:
        Acceleration(precision=self.precision)  # validates precision
        for name in ("horizon", "backup_every", "batch_size", "num_batches_to_preload"):
            if getattr(self, name) < 1:
                raise UserError(f"ImaginationConfig.{name}={getattr(self, name)} is invalid: expected >= 1")
        if self.sample_weights is not None:
            object.__setattr__(self, "sample_weights", check_sample_weights(self.sample_weights))


# ----------------------------------------------------------------------------------------- start contexts


class PreloadedStarts:
    """Start contexts for dreams, drawn ``num_batches`` batches at a time (DIAMOND's ``make_generator_init``).

    Each batch is a DIAMOND ``BatchSampler`` draw (``training.data.sampling.BatchSampler.sample_positions``: L frames,
    padding only before an episode's start, grey as DIAMOND pads); the reward/termination model's
    LSTM is burnt in on each batch's L-1 transitions as it is preloaded. Frames are kept as uint8 with
    their padding mask and made float when handed out, the same values as at preload.
    """

    def __init__(self, dataset: EpisodeDataset, world_model: WorldModel, batch_size: int, num_batches: int,
                 sample_weights: tuple[float, ...] | None, rng: np.random.Generator) -> None:
        self.dataset, self.world_model, self.rng = dataset, world_model, rng
        self.sampler = BatchSampler(dataset)
        self.batch_size, self.num_batches, self.sample_weights = batch_size, num_batches, sample_weights
        self.context_length = world_model.config.denoiser.context_length
        self.groups = 0  # groups preloaded so far
        self._group: dict[str, Tensor] = {}
        self._next = 0

    @property
    def remaining(self) -> int:
        """Contexts of the current group not handed out yet."""
        return len(self._group["frames"]) - self._next if self._group else 0

    def take(self, n: int) -> tuple[Tensor, Tensor, LSTMState]:
        """The next ``n`` contexts: frames (n, L, c, h, w) in [-1, 1], actions (n, L) and the reward/termination
        LSTM state after their transitions, ((1, n, d), (1, n, d))."""
        if n > self.remaining:
            self._preload()
            if n > self.remaining:
                raise UserError(f"{n} start contexts asked at once, but a group holds {self.remaining}")
        rows = slice(self._next, self._next + n)
        self._next += n
        g = self._group
        return (_grey_padded(g["frames"][rows], g["frame_mask"][rows]), g["actions"][rows].clone(),
                (g["h"][rows].unsqueeze(0).clone(), g["c"][rows].unsqueeze(0).clone()))

    @torch.no_grad()
    def _preload(self) -> None:
        device, L = self.world_model.device, self.context_length
        parts: dict[str, list[Tensor]] = {"frames": [], "frame_mask": [], "actions": [], "h": [], "c": []}
        for _ in range(self.num_batches):
            ids, starts = self.sampler.sample_positions(self.batch_size, L, self.rng,
                                                        sample_weights=self.sample_weights)
            segment = self.dataset.get_segments(ids, starts, L - 1)
            frames_u8 = torch.as_tensor(segment.frames, device=device)
            frame_mask = torch.as_tensor(segment.frame_mask, device=device)
            # the action of the last frame is the agent's, written at each step: a placeholder here
            actions = torch.zeros(len(ids), L, dtype=torch.long, device=device)
            actions[:, :-1] = torch.as_tensor(segment.actions, device=device)
            h, c = self.world_model.burn_in(_grey_padded(frames_u8, frame_mask), actions)
            for name, value in (("frames", frames_u8), ("frame_mask", frame_mask), ("actions", actions),
                                ("h", h[0]), ("c", c[0])):
                parts[name].append(value)
        self._group = {name: torch.cat(values) for name, values in parts.items()}
        self._next = 0
        self.groups += 1


def _grey_padded(frames_u8: Tensor, frame_mask: Tensor) -> Tensor:
    """uint8 (n, L, h, w, c) -> float (n, L, c, h, w) in [-1, 1], padded frames 0 (DIAMOND's padding)."""
    return to_model_frames(frames_u8) * frame_mask[:, :, None, None, None]


# ---------------------------------------------------------------------------------------------- the dream


class WorldModelEnv:
    """``num_envs`` dreams of a world model with DIAMOND's ``WorldModelEnv`` interface.

    ``reset() -> (obs, info)`` and ``step(actions) -> (obs, reward, terminated, truncated, info)``, obs
    float (n, c, h, w) in [-1, 1]. Where an episode ended, ``obs`` is already the last frame of its new
    context, ``info["final_observation"]`` holds the frames the ended episodes reached and
    ``info["burnin_obs"]`` their new contexts' first L-1 frames, both for the ended rows in order.

    Why not ``gym_diamond.envs.core.DreamCore``, which steps dreams too: this one is DIAMOND's imagination, computation
    for computation (its ``envs/world_model_env.py``). Its starts come preloaded from the dataset with the LSTM
    burnt in per batch, its episodes are cut after ``horizon`` steps of their own, and ``truncated`` is not masked by
    ``terminated``: both can be true on one step, as in DIAMOND, whose lambda-returns let the termination win
    (``training.agents.losses``). ``DreamCore`` serves the gymnasium and SB3 faces, where a step that terminates is
    not also truncated (gymnasium's and SB3's convention: ``TimeLimit.truncated`` means cut while still alive).
    """

    def __init__(self, world_model: WorldModel, starts: PreloadedStarts, num_envs: int, horizon: int,
                 generator: torch.Generator) -> None:
        self.world_model, self.starts, self.num_envs = world_model, starts, num_envs
        self.horizon, self.generator = horizon, generator
        self.num_actions = world_model.config.num_actions
        self.frames = self.actions = self.episode_steps = None
        self.rew_end_state: LSTMState | None = None

    @torch.no_grad()
    def reset(self) -> tuple[Tensor, dict[str, Tensor]]:
        """Every dream from a new start context; returns the contexts' last frames."""
        self.frames, self.actions, self.rew_end_state = self.starts.take(self.num_envs)
        self.episode_steps = torch.zeros(self.num_envs, dtype=torch.long, device=self.frames.device)
        return self.frames[:, -1], {}

    @torch.no_grad()
    def step(self, actions: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """One imagined step of every dream; ended ones restart from new contexts in the same call."""
        self.actions[:, -1] = actions
        out = self.world_model.imagine_step(self.frames, self.actions, self.rew_end_state, self.generator)
        self.rew_end_state = out.state
        self.episode_steps = self.episode_steps + 1
        truncated = self.episode_steps >= self.horizon
        self.frames = torch.cat([self.frames[:, 1:], out.next_frame[:, None]], dim=1)
        self.actions = self.actions.roll(-1, dims=1)
        dead = out.terminated | truncated
        info: dict[str, Tensor] = {}
        if dead.any():
            self._restart(dead)
            info = {"final_observation": out.next_frame[dead], "burnin_obs": self.frames[dead, :-1]}
        return self.frames[:, -1], out.reward, out.terminated, truncated, info

    def _restart(self, dead: Tensor) -> None:
        frames, actions, (h, c) = self.starts.take(int(dead.sum()))
        self.frames[dead], self.actions[dead] = frames, actions
        self.rew_end_state[0][:, dead], self.rew_end_state[1][:, dead] = h, c
        self.episode_steps[dead] = 0


# ------------------------------------------------------------------------------------------ the env loop


@dataclass
class Rollout:
    """``num_steps`` steps of the ongoing dreams, batch-first, as ``rollout_loss`` takes them."""

    logits: Tensor  # (n, H, k), with gradient
    values: Tensor  # (n, H), with gradient
    actions: Tensor  # (n, H) int64
    rewards: Tensor  # (n, H) float
    terminated: Tensor  # (n, H) bool
    truncated: Tensor  # (n, H) bool
    final_values: Tensor  # (n, H): the value of the final observation where step t ended an episode, else 0
    bootstrap: Tensor  # (n,): the value of the observation after the last step


class EnvLoop:
    """DIAMOND's ``make_env_loop`` as an object: ``rollout(n)`` is its ``send(n)``.

    ``env`` has :class:`WorldModelEnv`'s interface; ``sample_actions`` maps the policy's logits (n, k) to
    actions (n,), so a test can replay recorded ones.
    """

    def __init__(self, env: Any, actor_critic: ActorCritic, sample_actions: ActionSampler,
                 precision: str = "fp32") -> None:
        self.env, self.actor_critic, self.sample_actions = env, actor_critic, sample_actions
        self.autocast = Acceleration(precision=precision).autocast
        self.obs: Tensor | None = None
        self.state: LSTMState | None = None

    def _act_value(self, frames: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        with self.autocast(frames.device):
            logits, value, (h, c) = self.actor_critic(frames, state)
        return logits.float(), value.float(), (h.float(), c.float())

    def rollout(self, num_steps: int) -> Rollout:
        """The next ``num_steps`` steps of the dreams (the first call resets them)."""
        if self.obs is None:
            self.obs, _ = self.env.reset()
            self.state = self.actor_critic.initial_state(self.env.num_envs, self.obs.device)
        obs, (h, c) = self.obs, (s.detach() for s in self.state)
        steps: list[tuple[Tensor, ...]] = []
        final_values = torch.zeros(len(obs), num_steps, device=obs.device)
        for t in range(num_steps):
            logits, value, (h, c) = self._act_value(obs, (h, c))
            action = self.sample_actions(logits.detach())
            obs, reward, terminated, truncated, info = self.env.step(action)
            terminated, truncated = terminated.bool(), truncated.bool()
            dead = terminated | truncated
            if dead.any():
                with torch.no_grad():  # the final observation's value, seen with the ended episode's state
                    _, final, _ = self._act_value(info["final_observation"], (h[dead], c[dead]))
                final_values[dead, t] = final
                h, c = self._restart_rows(dead, (h, c), info.get("burnin_obs"))
            steps.append((logits, value, action, reward.float(), terminated, truncated))
        with torch.no_grad():
            _, bootstrap, _ = self._act_value(obs, (h, c))
        self.obs, self.state = obs, (h.detach(), c.detach())
        columns = (torch.stack(x, dim=1) for x in zip(*steps, strict=True))
        return Rollout(*columns, final_values=final_values, bootstrap=bootstrap)

    def _restart_rows(self, dead: Tensor, state: LSTMState, burnin: Tensor | None) -> LSTMState:
        """Zero the ended rows' LSTM state, then burn it in on their new contexts, with gradient."""
        keep = 1 - dead.float().unsqueeze(1)
        h, c = state[0] * keep, state[1] * keep
        if burnin is None or burnin.shape[1] == 0:
            return h, c
        with self.autocast(burnin.device):
            new_h, new_c = self.actor_critic.burn_in(burnin, (h[dead], c[dead]))
        return h.index_put((dead,), new_h.float()), c.index_put((dead,), new_c.float())


def imagination_loss(rollout: Rollout, actor_critic: ActorCritic) -> tuple[ActorCriticLosses, dict[str, float]]:
    """DIAMOND's actor-critic loss of one rollout, and the scalars to log."""
    losses = rollout_loss(rollout.logits, rollout.values, rollout.actions, rollout.rewards, rollout.terminated,
                          rollout.truncated, rollout.bootstrap, actor_critic.config, final_values=rollout.final_values)
    ends = rollout.terminated | rollout.truncated
    return losses, {**losses.scalars(), "imagined_reward_per_step": float(rollout.rewards.mean()),
                    "imagined_end_rate": float(rollout.terminated.float().mean()),
                    "imagined_episodes_ended": float(ends.float().sum())}


# ---------------------------------------------------------------------------------------------- training


class _RolloutObjective(nn.Module):
    """One imagined rollout and its loss as a forward pass, the form DistributedDataParallel wraps."""

    def __init__(self, actor_critic: ActorCritic, trainer: ImaginationTrainer) -> None:
        super().__init__()
        self.actor_critic = actor_critic
        self._rollout = trainer._rollout_loss  # a bound method, not a registered module

    def forward(self) -> tuple[Tensor, dict[str, float]]:
        return self._rollout()


class ImaginationTrainer:
    """Updates an actor-critic on the ongoing dreams of a (frozen) world model, as DIAMOND does."""

    def __init__(self, world_model: WorldModel | None, actor_critic: ActorCritic, dataset: EpisodeDataset | None,
                 config: ImaginationConfig | None = None, seed: int = 0,
                 distributed: Distributed | None = None, make_env: Callable[[], Any] | None = None) -> None:
        """``make_env`` replaces the dreams by another env with ``WorldModelEnv``'s interface and ``batch_size``
        rows (``training.agents.real_game_env.RealGameEnv``: the real-game control); world model and dataset are then
        unused."""
        self.config = c = config or ImaginationConfig()
        self.world_model, self.actor_critic, self.dataset = world_model, actor_critic, dataset
        self.make_env = make_env
        if make_env is None and (world_model is None or dataset is None):
            raise UserError("dreams need a world model and a dataset to start from (or pass make_env)")
        self.device = next(actor_critic.parameters()).device
        self.seed, self.distributed = seed, distributed or Distributed()
        self.rng = np.random.default_rng(seed)
        self.policy_generator = torch.Generator(device=self.device).manual_seed(seed)
        self.dream_generator = torch.Generator(device=self.device).manual_seed(seed + 1)
        if c.compile:
            actor_critic.compile()
        self.optimizer = adamw(actor_critic, c.lr, c.eps, weight_decay=0.0)
        self.steps = 0
        self._objective = self.distributed.wrap(_RolloutObjective(actor_critic, self))
        self._own_streams()
        self._new_dreams()

    def _own_streams(self) -> None:
        """Ranks other than 0 dream from streams of their own (derived, so no state binds them to N)."""
        rank = self.distributed.rank
        if rank == 0:
            return
        entropy = [self.seed, rank, self.steps]
        self.rng = np.random.default_rng(entropy)
        seeds = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64) >> np.uint64(2)
        self.policy_generator.manual_seed(int(seeds[0]))
        self.dream_generator.manual_seed(int(seeds[1]))

    def _new_dreams(self) -> None:
        """A fresh env loop: the next update resets every dream from newly preloaded start contexts."""
        c = self.config
        if self.make_env is not None:
            if getattr(self, "env", None) is not None:
                self.env.close()  # real games hold threads and emulators
            self.env = self.make_env()
        else:
            starts = PreloadedStarts(self.dataset, self.world_model, c.batch_size, c.num_batches_to_preload,
                                     c.sample_weights, self.rng)
            self.env = WorldModelEnv(self.world_model, starts, c.batch_size, c.horizon, self.dream_generator)
        self.loop = EnvLoop(self.env, self.actor_critic, self._sample_actions, c.precision)

    def _sample_actions(self, logits: Tensor) -> Tensor:
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=self.policy_generator).squeeze(-1)

    def step(self) -> dict[str, float]:
        """The next ``backup_every`` steps of the dreams and one update; returns the scalars to log."""
        c = self.config
        total, scalars = self._objective()
        lr = warmup_lr(c.lr, self.steps, c.warmup_steps)
        grad_norm = optimizer_update(self.optimizer, total, lr, c.grad_clip)
        self.steps += 1
        names = list(scalars)
        return {**dict(zip(names, self.distributed.mean([scalars[k] for k in names]), strict=True)),
                "ac_grad_norm": grad_norm}

    def _rollout_loss(self) -> tuple[Tensor, dict[str, float]]:
        self.actor_critic.train()
        losses, scalars = imagination_loss(self.loop.rollout(self.config.backup_every), self.actor_critic)
        return losses.total, scalars

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: network, optimiser, step count, RNG states (not the ongoing dreams)."""
        return {"actor_critic": self.actor_critic.state_dict(), "optimizer": optimizer_state(self.optimizer),
                "steps": self.steps, "rng": rng_state(self.rng, self.policy_generator),
                "dream_rng": self.dream_generator.get_state(), "config": dataclasses.asdict(self.config),
                "recipe": IMAGINATION_RECIPE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict``'s output; the dreams start afresh (as DIAMOND's on resume)."""
        if state.get("recipe") != IMAGINATION_RECIPE:
            raise UserError("the saved actor-critic training state was written by an earlier gym-diamond, whose "
                            "dreams restarted at every update: start a new run with another --out")
        self.actor_critic.load_state_dict(state["actor_critic"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.steps = int(state["steps"])
        restore_rng(state["rng"], self.rng, self.policy_generator)
        self.dream_generator.set_state(state["dream_rng"])
        self._own_streams()
        self._new_dreams()
