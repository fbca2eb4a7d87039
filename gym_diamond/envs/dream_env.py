"""DreamEnv: one dream as a gymnasium environment (``gym.make("DiamondDream/Pong-v0")``)."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from gym_diamond.envs.core import GivenStart, StartSource
from gym_diamond.envs.opening import ActionMeanings, check_render_options, check_start, open_dream, start_source
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from gym_diamond.errors import UserError
from gym_diamond.render import HumanWindow, upscale

RESET_OPTIONS = {"start", "context", "context_actions"}


class DreamEnv(ActionMeanings, gym.Env[np.ndarray, np.int64]):
    """A DIAMOND world model of an Atari game, played one imagined step at a time.

    Observations are the dreamed 64x64 RGB frames (uint8), actions the game's minimal action set,
    rewards the reward model's sign in {-1, 0, 1}; an episode terminates when the termination model
    says so. ``gym.make`` adds a 1,000-step time limit.

    Where a dream starts, per reset: ``options={"start": "bank"}`` (the default) draws L real frames
    from the checkpoint's start bank (L: the denoiser's context length, DIAMOND's 4); ``{"start": "ale"}``
    (or ``start="ale"``) resets the real game and hands its frames over, and :attr:`real_game` then plays on
    from the same point; and ``{"context": frames}`` starts from frames you give, uint8 ``(L, 64, 64, 3)``,
    with optional ``"context_actions"`` ``(L,)`` (the actions taken at them; NOOP by default).
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 15}

    def __init__(self, game: str | None = None, checkpoint: str | os.PathLike | None = None, *,
                 device: torch.device | str | None = None, render_mode: str | None = None,
                 render_size: int = 256, max_episode_steps: int | None = None, start: str = "bank",
                 denoising_steps: int | None = None, sampler_start: str | None = None, precision: str | None = None,
                 compile: bool = False, cuda_graphs: bool = False,
                 rew_end_window: int | None = DEFAULT_WINDOW) -> None:
        check_render_options(render_mode, self.metadata["render_modes"], render_size)
        dream = open_dream(game, checkpoint, num_envs=1, device=device, max_episode_steps=max_episode_steps,
                           start=start, autoreset=False, denoising_steps=denoising_steps,
                           sampler_start=sampler_start, precision=precision,
                           compile=compile, cuda_graphs=cuda_graphs, rew_end_window=rew_end_window)
        self.game, self.action_meanings, self.core = dream.game, dream.action_meanings, dream.core
        self._start_bank = dream.start_bank
        self.start = start
        self._sources: dict[str, StartSource] = {start: self.core.start_source}
        h, _, c = dream.start_bank.frames.shape[2:]
        self.observation_space = spaces.Box(0, 255, (h, h, c), np.uint8)
        self.action_space = spaces.Discrete(self.core.num_actions)
        self.render_mode = render_mode
        self.render_size = render_size
        self._window: HumanWindow | None = None
        self._obs: np.ndarray | None = None

    @property
    def real_game(self) -> gym.Env | None:
        """The real game the current dream started from (after a ``"start": "ale"`` reset), else None.

        Step it with the dream's actions to see how long the dream stays faithful; the next reset
        replaces its state.
        """
        from gym_diamond.envs.ale_starts import AleStarts

        source = self.core.start_source
        return source.envs[0] if isinstance(source, AleStarts) else None

    def _use_start(self, start: str) -> None:
        start = check_start(start)
        if start not in self._sources:
            self._sources[start] = start_source(start, self.game, self._start_bank, 1, self.core.frames.shape[1],
                                                self.core.device)
        self.core.start_source = self._sources[start]

    def _given_start(self, frames: Any, actions: Any) -> GivenStart:
        L = self.core.frames.shape[1]
        frames = np.asarray(frames)
        if frames.dtype != np.uint8 or frames.shape != (L, *self.observation_space.shape):
            raise UserError(f"reset option 'context' must be uint8 frames of shape "
                            f"{(L, *self.observation_space.shape)}, got {frames.dtype} {frames.shape}")
        actions = np.zeros(L, np.int64) if actions is None else np.asarray(actions)
        if actions.shape != (L,) or not np.issubdtype(actions.dtype, np.integer) or not (
                (actions >= 0) & (actions < self.action_space.n)).all():
            raise UserError(f"reset option 'context_actions' must be {L} integers in [0, {self.action_space.n}), "
                             f"got {actions!r}")
        device = self.core.device
        return GivenStart(torch.as_tensor(frames, device=device), torch.as_tensor(actions, device=device).long())

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start a new dream.

        Args:
            seed: seeds the dream's random stream (sampler noise, reward and end sampling, the start context);
                None continues the stream (fresh seeds from the OS at the first reset).
            options: ``{"start": "bank"}`` (a real context stored in the checkpoint, the default) or
                ``{"start": "ale"}`` (the real game's frames; it plays on beside the dream in ``real_game``), or
                ``{"context": frames}`` (uint8 (L, 64, 64, 3) of your own, with ``"context_actions"`` (L,) optional).

        Returns:
            observation: uint8 (64, 64, 3), the last frame of the start context.
            info: ``{"episode_step": 0}``.
        """
        super().reset(seed=seed)
        options = options or {}
        unknown = set(options) - RESET_OPTIONS
        if unknown:
            raise UserError(f"unknown reset option(s) {sorted(unknown)}; known: {sorted(RESET_OPTIONS)}")
        if "context" in options:
            if "start" in options:
                raise UserError("reset options 'start' and 'context' exclude each other: give one")
            self.core.start_source = self._given_start(options["context"], options.get("context_actions"))
        elif "context_actions" in options:
            raise UserError("reset option 'context_actions' needs 'context', the frames they were taken at")
        else:
            self._use_start(options.get("start", self.start))
        self._obs = self.core.reset(seed=seed)[0].cpu().numpy()
        if self.render_mode == "human":
            self.render()
        return self._obs, {"episode_step": 0}

    def step(self, action: int | np.integer) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Imagine one step: one sampler call for the next frame, one reward/termination call.

        Args:
            action: an integer in ``[0, action_space.n)`` (``get_action_meanings()`` names them).

        Returns:
            observation: uint8 (64, 64, 3), the imagined frame.
            reward: the sign of the reward the reward model samples (-1.0, 0.0 or 1.0).
            terminated: whether the termination model sampled an end.
            truncated: always False here; ``gym.make`` adds the ``max_episode_steps`` time limit.
            info: ``{"episode_step": n}``, steps since the reset.
        """
        if isinstance(action, np.ndarray) and action.shape == ():
            action = action.item()
        if isinstance(action, (bool, float, np.floating)) or not isinstance(action, (int, np.integer)):
            raise TypeError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        if not 0 <= action < self.action_space.n:
            raise UserError(f"action must be in [0, {self.action_space.n}), got {action}")
        out = self.core.step(torch.tensor([int(action)], device=self.core.device))
        self._obs = out.final_obs[0].cpu().numpy()
        info = {"episode_step": int(out.episode_length[0])}
        if self.render_mode == "human":
            self.render()
        return self._obs, float(out.reward[0]), bool(out.terminated[0]), bool(out.truncated[0]), info

    def render(self) -> np.ndarray | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make")
            return None
        frame = upscale(self._obs if self._obs is not None else np.zeros(self.observation_space.shape, np.uint8),
                        self.render_size)
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = HumanWindow(self.render_size, self.metadata["render_fps"], f"DiamondDream {self.game}")
        self._window.show(frame)
        return None

    def close(self) -> None:
        if self._window is not None:
            self._window.close()
            self._window = None
        self.core.close(list(self._sources.values()))
