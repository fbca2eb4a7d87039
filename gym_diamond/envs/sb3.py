"""DreamSB3VecEnv: n dreams as one stable-baselines3 VecEnv, stepped in one batched call (no DummyVecEnv).

    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecMonitor, VecTransposeImage
    from gym_diamond.envs.sb3 import DreamSB3VecEnv

    env = VecTransposeImage(VecMonitor(DreamSB3VecEnv.from_checkpoint("Pong.safetensors", num_envs=16)))
    PPO("CnnPolicy", env).learn(100_000)

It follows SB3's VecEnv contract as ``DummyVecEnv`` does: ``step`` returns (obs uint8 (n, 64, 64, 3),
rewards float32 (n,), dones bool (n,), infos); an environment that ends restarts in the same step, its
returned observation is the new episode's first frame and ``infos[i]["terminal_observation"]`` the
frame it ended on; ``infos[i]["TimeLimit.truncated"]`` is true when it ran out of time without
terminating. ``seed(s)`` seeds environment i with ``s + i`` at the next ``reset()``.

All n environments live in one :class:`~gym_diamond.envs.core.DreamCore`, so attributes and methods
are shared: ``get_attr``/``env_method`` read or call the one object and return its answer once per
requested index. A finished episode's info carries ``"episode": {"r": return, "l": length, "t": seconds}`` as
SB3's ``Monitor`` writes it, so SB3 logs ``ep_rew_mean`` and ``ep_len_mean`` with no wrapper (``VecMonitor``
on top computes the same figures).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from gym_diamond.envs.core import DreamCore
from gym_diamond.envs.opening import ActionMeanings, open_dream
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from gym_diamond.errors import UserError
from gym_diamond.registration import DEFAULT_MAX_EPISODE_STEPS
from gym_diamond.render import upscale


class DreamSB3VecEnv(ActionMeanings, VecEnv):
    """A stable-baselines3 VecEnv over one batched :class:`DreamCore` (which must autoreset).

    ``action_meanings`` names the core's actions (``get_action_meanings``); ``render_size`` is the side
    of the frames ``get_images``/``render`` return, nearest-upscaled from the dream's 64x64.
    """

    def __init__(self, core: DreamCore, action_meanings: list[str] | None = None, render_size: int = 256, *,
                 game: str | None = None) -> None:
        if not isinstance(core, DreamCore):
            raise TypeError(f"core must be a DreamCore, got {type(core).__name__}")
        if not core.autoreset:
            raise UserError("DreamSB3VecEnv needs a DreamCore built with autoreset=True (SB3 VecEnvs reset "
                            "ended environments themselves)")
        if action_meanings is None:
            action_meanings = [f"ACTION_{i}" for i in range(core.num_actions)]
        action_meanings = [str(a) for a in action_meanings]
        if len(action_meanings) != core.num_actions:
            raise UserError(f"{len(action_meanings)} action meanings for a dream of {core.num_actions} actions")
        upscale(np.zeros((1, 1, 3), np.uint8), render_size)  # validates render_size
        self.core = core
        self.game = game
        self.action_meanings = action_meanings
        self.render_size = render_size
        self.render_mode = "rgb_array"  # read by VecEnv.__init__ through get_attr
        self.device = core.device
        _, _, c, h, w = core.frames.shape
        observation_space = spaces.Box(0, 255, (h, w, c), np.uint8)
        action_space = spaces.Discrete(core.num_actions)
        super().__init__(core.num_envs, observation_space, action_space)
        self._obs: torch.Tensor | None = None
        self._actions: torch.Tensor | None = None
        self._started = time.time()  # Monitor's "t" counts from here
        self._episode_returns = np.zeros(self.num_envs, np.float64)
        self._episode_lengths = np.zeros(self.num_envs, np.int64)

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike, num_envs: int, *, device: torch.device | str | None = None,
                        max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS, render_size: int = 256,
                        denoising_steps: int | None = None, sampler_start: str | None = None,
                        precision: str | None = None, compile: bool = False, cuda_graphs: bool = False,
                        rew_end_window: int | None = DEFAULT_WINDOW) -> DreamSB3VecEnv:
        """Load a checkpoint (``device`` None: CUDA when available) and dream ``num_envs`` environments in it.

        The other options are ``gym_diamond.registration.load_dream``'s.
        """
        dream = open_dream(None, path, num_envs=num_envs, device=device, max_episode_steps=max_episode_steps,
                           denoising_steps=denoising_steps, sampler_start=sampler_start, precision=precision,
                           compile=compile, cuda_graphs=cuda_graphs, rew_end_window=rew_end_window)
        return cls(dream.core, action_meanings=dream.action_meanings, render_size=render_size, game=dream.game)

    # ------------------------------------------------------------ reset/step
    def reset(self) -> VecEnvObs:
        """Reset all environments, with the seeds given to ``seed()`` if any (used once, as SB3 does)."""
        if any(self._options):
            raise UserError(f"DreamSB3VecEnv takes no reset options, got {self._options}")
        seeds = list(self._seeds)
        seeded = [s is not None for s in seeds]
        core = self.core
        if not any(seeded):
            obs = core.reset()  # first reset: fresh seeds from the OS; later: the streams go on
        elif all(seeded) or core.needs_reset:
            if not all(seeded):  # never seeded before: draw fresh seeds for the rest, as core.reset(None) would
                fresh = np.random.SeedSequence().generate_state(self.num_envs, np.uint32)
                seeds = [int(s) if s is not None else int(f) for s, f in zip(seeds, fresh, strict=True)]
            obs = core.reset(seed=[int(s) for s in seeds])
        else:  # some seeded, the others continue their streams
            mask = torch.tensor(seeded, device=self.device)
            core.reset(seed=[int(s) if s is not None else 0 for s in seeds], mask=mask)
            obs = core.reset(mask=~mask)
        self._obs = obs
        self._actions = None
        self._episode_returns[:], self._episode_lengths[:] = 0, 0
        self.reset_infos = [{} for _ in range(self.num_envs)]
        self._reset_seeds()
        self._reset_options()
        return obs.cpu().numpy()

    def step_async(self, actions: np.ndarray) -> None:
        """Validate the actions now (TypeError/ValueError for a wrong dtype, count or range)."""
        if self._obs is None:
            raise RuntimeError("call reset() before step()")
        self._actions = self.core.check_actions(actions)

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without a pending step_async()")
        out = self.core.step(self._actions)
        self._actions = None
        self._obs = out.obs
        obs = out.obs.cpu().numpy()
        flags = torch.stack([out.reward.float(), out.terminated.float(), out.truncated.float()]).cpu().numpy()
        rewards = flags[0].astype(np.float32)
        terminated, truncated = flags[1] > 0, flags[2] > 0
        dones = terminated | truncated
        time_limit = truncated & ~terminated
        infos: list[dict[str, Any]] = [{"TimeLimit.truncated": bool(t)} for t in time_limit]
        self._episode_returns += rewards
        self._episode_lengths += 1
        if dones.any():
            final = out.final_obs.cpu().numpy()
            seconds = round(time.time() - self._started, 6)
            for i in np.flatnonzero(dones):  # only building SB3's per-env info dicts
                infos[i]["terminal_observation"] = final[i]
                infos[i]["episode"] = {"r": round(float(self._episode_returns[i]), 6),
                                       "l": int(self._episode_lengths[i]), "t": seconds}
            self._episode_returns[dones], self._episode_lengths[dones] = 0, 0
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.core.close()

    # ----------------------------------------------------------- rendering
    def get_images(self) -> Sequence[np.ndarray | None]:
        """Each environment's current frame, uint8 (render_size, render_size, 3)."""
        if self._obs is None:
            raise RuntimeError("call reset() before get_images()")
        return list(upscale(self._obs.cpu().numpy(), self.render_size))

    def render(self, mode: str | None = None) -> np.ndarray | None:
        """``mode="rgb_array"`` (the default) tiles all environments' frames into one image."""
        return super().render(mode=mode)

    # ------------------------------------------------------ SB3 plumbing
    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The shared attribute, once per requested environment (AttributeError if missing)."""
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Attributes are shared by all environments, so they can only be set for all of them."""
        targets = sorted(set(self._get_indices(indices)))
        if targets != list(range(self.num_envs)):
            raise UserError(f"the {self.num_envs} dream environments share their attributes; set_attr "
                            f"{attr_name!r} needs indices=None (all), got {indices!r}")
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        """Call the shared method once and return its result once per requested environment."""
        targets = list(self._get_indices(indices))
        method = getattr(self, method_name)
        if not callable(method):
            raise AttributeError(f"{type(self).__name__}.{method_name} is not a method")
        result = method(*method_args, **method_kwargs)
        return [result for _ in targets]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """No gymnasium wrappers live inside: always False."""
        return [False for _ in self._get_indices(indices)]

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Environment i gets ``seed + i`` at the next ``reset()`` (SB3's rule); None draws a random base."""
        if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0):
            raise UserError(f"seed must be a non-negative integer or None, got {seed!r}")
        return super().seed(None if seed is None else int(seed))

