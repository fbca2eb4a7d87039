"""DreamVectorEnv: n dreams as one gymnasium VectorEnv, stepped in one batched forward pass."""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from gym_diamond.envs.opening import ActionMeanings, check_render_options, open_dream
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from gym_diamond.errors import UserError
from gym_diamond.render import upscale

OUTPUTS = ("numpy", "torch")


class DreamVectorEnv(ActionMeanings, VectorEnv):
    """``gym.make_vec("DiamondDream/<Game>-v0", num_envs=n, device=...)``: all n step in one call.

    Autoreset is SAME_STEP: an environment that ends restarts within the same ``step``; the returned
    observation is its new first frame, and ``infos["final_obs"]`` / ``infos["final_info"]`` (masked
    by ``infos["_final_obs"]``) hold what it ended on, as gymnasium 1.x defines them.
    ``output="torch"`` returns tensors on the device and never copies to the host: then
    ``infos["final_obs"]`` is a (n, h, w, c) uint8 tensor, valid where the ``infos["_final_obs"]``
    tensor is true, present on every step.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 15, "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, game: str | None = None, checkpoint: str | os.PathLike | None = None, *,
                 device: torch.device | str | None = None, max_episode_steps: int | None = None,
                 output: str = "numpy", render_mode: str | None = None, render_size: int = 256,
                 start: str = "bank", denoising_steps: int | None = None, sampler_start: str | None = None,
                 precision: str | None = None, compile: bool = False, cuda_graphs: bool = False,
                 rew_end_window: int | None = DEFAULT_WINDOW) -> None:
        if output not in OUTPUTS:
            raise UserError(f"output must be one of {OUTPUTS}, got {output!r}")
        check_render_options(render_mode, self.metadata["render_modes"], render_size)
        dream = open_dream(game, checkpoint, num_envs=num_envs, device=device, max_episode_steps=max_episode_steps,
                           start=start, denoising_steps=denoising_steps, sampler_start=sampler_start,
                           precision=precision, compile=compile, cuda_graphs=cuda_graphs,
                           rew_end_window=rew_end_window)
        self.game, self.action_meanings, self.core = dream.game, dream.action_meanings, dream.core
        self.num_envs = num_envs
        self.device = self.core.device
        self.output = output
        self.render_mode = render_mode
        self.render_size = render_size
        h, _, c = dream.start_bank.frames.shape[2:]
        self.single_observation_space = spaces.Box(0, 255, (h, h, c), np.uint8)
        self.single_action_space = spaces.Discrete(self.core.num_actions)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._obs: torch.Tensor | None = None

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None
              ) -> tuple[Any, dict[str, Any]]:
        """Start new dreams in all environments (or some).

        Args:
            seed: an int seeds environment i with ``seed + i``, a list gives one seed each; None continues the
                streams (fresh seeds from the OS at the first reset).
            options: ``{"reset_mask": mask}`` resets only the environments where ``mask`` (n,) bool is true.

        Returns:
            observations: uint8 (n, 64, 64, 3), numpy (or a device tensor with ``output="torch"``).
            infos: an empty dict.
        """
        super().reset(seed=seed if isinstance(seed, int) else None)
        options = options or {}
        unknown = set(options) - {"reset_mask"}
        if unknown:
            raise UserError(f"unknown reset option(s) {sorted(unknown)}; known: ['reset_mask']")
        self._obs = self.core.reset(seed=seed, mask=options.get("reset_mask"))
        return self._out(self._obs), {}

    def step(self, actions: Any) -> tuple[Any, Any, Any, Any, dict[str, Any]]:
        """Imagine one step of every environment in one batched call; ended ones restart in the same step.

        Args:
            actions: (n,) integers (numpy, a list, or a tensor on the device).

        Returns:
            observations: uint8 (n, 64, 64, 3); an ended environment's is its new episode's first frame.
            rewards: (n,) float64 reward signs; terminated, truncated: (n,) bool.
            infos: where an episode ended, ``final_obs`` (its last frame) and ``_final_obs`` (the mask), as
                gymnasium's SAME_STEP autoreset gives them. With ``output="torch"`` everything stays on the device.
        """
        out = self.core.step(actions)
        self._obs = out.obs
        done = out.done
        if self.output == "torch":
            infos = {"final_obs": out.final_obs, "_final_obs": done, "final_info": {}, "_final_info": done}
            return out.obs, out.reward, out.terminated, out.truncated, infos
        done_np = done.cpu().numpy()
        infos: dict[str, Any] = {}
        if done_np.any():
            final_obs = np.empty(self.num_envs, dtype=object)
            final_frames = out.final_obs.cpu().numpy()
            for i in np.flatnonzero(done_np):  # only building gymnasium's per-env object array
                final_obs[i] = final_frames[i]
            infos = {"final_obs": final_obs, "_final_obs": done_np, "final_info": {}, "_final_info": done_np}
        return (out.obs.cpu().numpy(), out.reward.cpu().numpy().astype(np.float64), out.terminated.cpu().numpy(),
                out.truncated.cpu().numpy(), infos)

    def _out(self, obs: torch.Tensor) -> Any:
        return obs if self.output == "torch" else obs.cpu().numpy()

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' to gym.make_vec")
            return None
        if self._obs is None:
            raise RuntimeError("call reset() before render()")
        return tuple(upscale(self._obs.cpu().numpy(), self.render_size))

    def close_extras(self, **kwargs: Any) -> None:
        self.core.close()
