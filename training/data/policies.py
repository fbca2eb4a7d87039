"""Policies that act in real games: random, DIAMOND's actor-critic, or any stable-baselines3 model.

They share one small interface so collection and evaluation need not know which is which:
``reset(mask)`` forgets the memory of the environments whose episode starts anew, and
``act(obs)`` maps uint8 observations ``(n, 64, 64, 3)`` to integer actions ``(n,)``.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch

from gym_diamond import to_model_frames
from gym_diamond.errors import UserError
from gym_diamond.nn.actor_critic import ActorCritic


class Agent(Protocol):
    def reset(self, mask: np.ndarray) -> None: ...

    def act(self, obs: np.ndarray) -> np.ndarray: ...


class RandomAgent:
    """Uniform random actions (DIAMOND's first epoch of collection)."""

    def __init__(self, num_actions: int, seed: int | None = None) -> None:
        if num_actions < 1:
            raise UserError(f"num_actions must be >= 1, got {num_actions}")
        self.num_actions = num_actions
        self.rng = np.random.default_rng(seed)

    def reset(self, mask: np.ndarray) -> None:
        """Forget the recurrent state of the environments where ``mask`` is true (new episodes)."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) int64 for a batch of uint8 observations (n, 64, 64, 3)."""
        return self.rng.integers(0, self.num_actions, len(obs), dtype=np.int64)


class ActorCriticAgent:
    """DIAMOND's actor-critic acting on real frames, one LSTM state per environment.

    ``epsilon`` is the chance of a uniform random action (collection uses 0.01); ``greedy`` takes the
    policy's argmax instead of sampling from it.
    """

    def __init__(self, actor_critic: ActorCritic, num_envs: int, *, epsilon: float = 0.0, greedy: bool = False,
                 seed: int | None = None) -> None:
        if not 0 <= epsilon <= 1:
            raise UserError(f"epsilon must be in [0, 1], got {epsilon}")
        self.model = actor_critic
        self.device = next(actor_critic.parameters()).device
        self.epsilon, self.greedy = epsilon, greedy
        self.rng = np.random.default_rng(seed)
        self.generator = torch.Generator(device=self.device).manual_seed(int(self.rng.integers(2**31)))
        self.state = actor_critic.initial_state(num_envs, self.device)

    def reset(self, mask: np.ndarray) -> None:
        """Forget the recurrent state of the environments where ``mask`` is true (new episodes)."""
        keep = torch.as_tensor(~np.asarray(mask, dtype=bool), device=self.device)[:, None]
        self.state = tuple(s * keep for s in self.state)

    @torch.no_grad()
    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        self.model.eval()
        frames = to_model_frames(torch.as_tensor(obs, device=self.device))
        actions, self.state = self.model.act(frames, self.state, generator=self.generator, greedy=self.greedy)
        actions = actions.cpu().numpy()
        if self.epsilon > 0:
            explore = self.rng.random(len(actions)) < self.epsilon
            actions = np.where(explore, self.rng.integers(0, self.model.config.num_actions, len(actions)), actions)
        return actions


class SB3Agent:
    """A trained stable-baselines3 model playing the real game (its ``predict``, recurrent state kept)."""

    def __init__(self, model: Any, deterministic: bool = False, frame_stack: int = 1) -> None:
        self.model, self.deterministic, self.frame_stack = model, deterministic, frame_stack
        self.state: Any = None
        self.stack: np.ndarray | None = None
        self.starts: np.ndarray | None = None

    def reset(self, mask: np.ndarray) -> None:
        """Forget the recurrent state of the environments where ``mask`` is true (new episodes)."""
        self.starts = np.asarray(mask, dtype=bool)
        if self.stack is not None:
            self.stack[self.starts] = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Actions (n,) for a batch of uint8 observations (n, 64, 64, 3)."""
        if self.frame_stack > 1:  # the layout of SB3's VecFrameStack on channels-last images
            if self.stack is None:
                self.stack = np.zeros((*obs.shape[:-1], obs.shape[-1] * self.frame_stack), obs.dtype)
            self.stack = np.concatenate([self.stack[..., obs.shape[-1]:], obs], axis=-1)
            obs = self.stack
        actions, self.state = self.model.predict(obs, state=self.state, episode_start=self.starts,
                                                 deterministic=self.deterministic)
        self.starts = np.zeros(len(obs), dtype=bool)
        return np.asarray(actions)
