"""Train DIAMOND's actor-critic inside a world model, with the same DreamCore the gym environments use.

Each update starts ``batch_size`` dreams from real contexts of the dataset, warms the actor-critic's
LSTM up on them, rolls out ``horizon`` imagined steps (dreams that end restart from new real contexts
in the same step, as in the environments) and takes one AdamW step on the lambda-return loss.

Data-parallel (``distributed`` of N ranks, training.distributed): each rank dreams its own
``batch_size`` rollouts from its own random streams, and DDP averages the gradients, so an update
learns from N x batch_size dreams. Rank 0's streams are those of a single process; the others
derive theirs from the seed, their rank and the update count, so a saved state resumes on any N.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from gym_diamond import StartBank, WorldModel
from gym_diamond.acceleration import Acceleration
from gym_diamond.envs.core import DreamCore
from training.actor_critic import ActorCritic, rollout_loss
from training.dataset import EpisodeDataset
from training.distributed import Distributed
from training.state import load_optimizer_state, optimizer_state, restore_rng, rng_state


@dataclass(frozen=True)
class ImaginationConfig:
    """REFERENCE.md: horizon 15, batch 32, AdamW lr 1e-4 without weight decay, warm-up 100, clip 100."""

    horizon: int = 15
    batch_size: int = 32
    lr: float = 1e-4
    eps: float = 1e-8
    warmup_steps: int = 100
    grad_clip: float = 100.0
    precision: str = "fp32"  # "bf16": autocast of the actor-critic's forward passes (the dream: WorldModel.accelerate)
    compile: bool = False  # torch.compile the actor-critic in place (the dream: WorldModel.accelerate)

    def __post_init__(self) -> None:
        Acceleration(precision=self.precision)  # validates precision
        for name in ("horizon", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"ImaginationConfig.{name}={getattr(self, name)} is invalid: expected >= 1")


class DatasetStarts:
    """Start contexts sampled from the dataset (with its recency weights) each time dreams restart."""

    def __init__(self, dataset: EpisodeDataset, context_length: int, rng: np.random.Generator,
                 device: torch.device) -> None:
        self.dataset, self.context_length, self.rng, self.device = dataset, context_length, rng, device

    def starts(self, mask: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """Fresh real contexts from the dataset for the masked rows."""
        L = self.context_length
        seg = self.dataset.sample_segments(len(mask), L, self.rng, require_last=True)
        frames = torch.as_tensor(np.ascontiguousarray(seg.frames[:, :L]), device=self.device)
        return frames, torch.as_tensor(seg.actions[:, :L], device=self.device).long()


class _RolloutObjective(nn.Module):
    """One imagined rollout and its loss as a forward pass, the form DistributedDataParallel wraps."""

    def __init__(self, actor_critic: ActorCritic, trainer: ImaginationTrainer) -> None:
        super().__init__()
        self.actor_critic = actor_critic
        self._rollout = trainer._rollout_loss  # a bound method, not a registered module

    def forward(self) -> tuple[Tensor, dict[str, float]]:
        return self._rollout()


class ImaginationTrainer:
    """Updates an actor-critic on rollouts imagined by a (frozen) world model."""

    def __init__(self, world_model: WorldModel, actor_critic: ActorCritic, dataset: EpisodeDataset,
                 config: ImaginationConfig | None = None, seed: int = 0,
                 distributed: Distributed | None = None) -> None:
        self.config = c = config or ImaginationConfig()
        self.world_model, self.actor_critic = world_model, actor_critic
        self.device = world_model.device
        self.seed, self.distributed = seed, distributed or Distributed()
        self.rng = np.random.default_rng(seed)
        self.policy_generator = torch.Generator(device=self.device).manual_seed(seed)
        L = world_model.config.denoiser.context_length
        self.starts = DatasetStarts(dataset, L, self.rng, self.device)
        placeholder = StartBank(*(t.cpu().numpy() for t in self.starts.starts(torch.ones(1, dtype=torch.bool), None)))
        self.core = DreamCore(world_model, placeholder, num_envs=c.batch_size, start_source=self.starts)
        self.core.reset(seed=seed)
        if c.compile:
            actor_critic.compile()
        self.optimizer = torch.optim.AdamW(actor_critic.parameters(), lr=c.lr, eps=c.eps, weight_decay=0.0)
        self.steps = 0
        self._objective = self.distributed.wrap(_RolloutObjective(actor_critic, self))
        self._own_streams()

    def _own_streams(self) -> None:
        """Ranks other than 0 dream from streams of their own (derived, so no state binds them to N)."""
        rank = self.distributed.rank
        if rank == 0:
            return
        entropy = [self.seed, rank, self.steps]
        self.rng = self.starts.rng = np.random.default_rng(entropy)
        seeds = np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint64) >> np.uint64(2)
        self.policy_generator.manual_seed(int(seeds[0]))
        self.core.reset(seed=int(seeds[1]))  # the dreams' per-row streams; every update restarts them anyway

    def _burn_in(self, rows: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The actor-critic's LSTM state after the context frames before the last (no gradient), for all
        dreams or for ``rows``."""
        frames = self.core.frames[:, :-1] if rows is None else self.core.frames[rows, :-1]
        with torch.no_grad():
            return self.actor_critic.burn_in(frames)

    def _restart_states(self, state: tuple[Tensor, Tensor], done: Tensor) -> tuple[Tensor, Tensor]:
        """``state`` with the rows of the dreams that restarted this step burnt in on their new contexts.

        On the CPU only those rows are burnt in (most steps have none); elsewhere all rows are, then
        selected, so that nothing waits on the host to learn which rows ended.
        """
        if self.device.type != "cpu":
            restarted = self._burn_in()
            return tuple(torch.where(done[:, None], new, old) for new, old in zip(restarted, state, strict=True))
        rows = done.nonzero().squeeze(1)
        if len(rows) == 0:
            return state
        restarted = self._burn_in(rows)
        return tuple(old.index_copy(0, rows, new) for new, old in zip(restarted, state, strict=True))

    def step(self) -> dict[str, float]:
        """One imagined rollout from fresh real contexts and one update; returns the scalars to log."""
        c, ac = self.config, self.actor_critic
        total, scalars = self._objective()
        for group in self.optimizer.param_groups:
            group["lr"] = c.lr * min(1.0, (self.steps + 1) / c.warmup_steps) if c.warmup_steps else c.lr
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(ac.parameters(), c.grad_clip)
        self.optimizer.step()
        self.steps += 1
        names = list(scalars)
        return {**dict(zip(names, self.distributed.mean([scalars[k] for k in names]), strict=True)),
                "ac_grad_norm": float(grad_norm)}

    def _rollout_loss(self) -> tuple[Tensor, dict[str, float]]:
        """Imagine ``horizon`` steps from fresh real contexts; the loss and the scalars to log."""
        c, core, ac = self.config, self.core, self.actor_critic
        core.reset()  # every update starts from new real contexts (the environments' streams continue)
        ac.train()
        state = self._burn_in()
        logits, values, actions, rewards, terminated, truncated = [], [], [], [], [], []
        autocast = Acceleration(precision=c.precision).autocast
        for _ in range(c.horizon):
            with autocast(core.device):
                step_logits, value, state = ac(core.frames[:, -1], state)
            step_logits, value = step_logits.float(), value.float()
            with torch.no_grad():
                probs = torch.softmax(step_logits.float(), dim=-1)
                action = torch.multinomial(probs, 1, generator=self.policy_generator).squeeze(-1)
            out = core.step(action)
            logits.append(step_logits), values.append(value), actions.append(action)
            rewards.append(out.reward), terminated.append(out.terminated), truncated.append(out.truncated)
            state = self._restart_states(state, out.done)
        with torch.no_grad(), autocast(core.device):
            _, bootstrap, _ = ac(core.frames[:, -1], state)
        bootstrap = bootstrap.float()
        losses = rollout_loss(torch.stack(logits, 1), torch.stack(values, 1), torch.stack(actions, 1),
                              torch.stack(rewards, 1), torch.stack(terminated, 1), torch.stack(truncated, 1),
                              bootstrap, ac.config)
        return losses.total, {**losses.scalars(), "imagined_reward_per_step": float(torch.stack(rewards, 1).mean()),
                              "imagined_end_rate": float(torch.stack(terminated, 1).float().mean())}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: networks, optimiser, step count, RNG states."""
        return {"actor_critic": self.actor_critic.state_dict(), "optimizer": optimizer_state(self.optimizer),
                "steps": self.steps, "rng": rng_state(self.rng, self.policy_generator),
                "dream_rng": self.core.generator.state_dict(), "config": dataclasses.asdict(self.config)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict``'s output."""
        self.actor_critic.load_state_dict(state["actor_critic"])
        load_optimizer_state(self.optimizer, state["optimizer"])
        self.steps = int(state["steps"])
        restore_rng(state["rng"], self.rng, self.policy_generator)
        self.core.generator.load_state_dict(state["dream_rng"])
        self._own_streams()

