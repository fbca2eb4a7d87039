"""What the three faces of a dream share: checking their options, loading the world model, building the core.

``DreamEnv``, ``DreamVectorEnv`` and ``DreamSB3VecEnv`` differ in the contract they keep (one gymnasium
env, a gymnasium vector env, an SB3 VecEnv), not in how a dream is opened: the same checkpoint search, the
same speed switches, the same start sources. ``open_dream`` does that once for all three.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gym_diamond.checkpoint import StartBank
from gym_diamond.envs.core import BankStarts, DreamCore, StartSource, check_start_bank, resolve_device
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, check_window
from gym_diamond.errors import UserError
from gym_diamond.registration import load_dream
from gym_diamond.render import upscale

__all__ = ["START_MODES", "ActionMeanings", "OpenedDream", "check_render_options", "check_start", "open_dream",
           "start_source"]

START_MODES = ("bank", "ale")


def check_start(start: str) -> str:
    """Where dreams start: the checkpoint's bank of real contexts ("bank") or the real game ("ale")."""
    if start not in START_MODES:
        raise UserError(f"start must be one of {START_MODES}, got {start!r}")
    return start


def check_render_options(render_mode: str | None, render_modes: Sequence[str], render_size: int) -> None:
    """A render mode the face supports (or None) and a valid render size, before any file is read."""
    if render_mode is not None and render_mode not in render_modes:
        raise UserError(f"render_mode must be one of {list(render_modes)} or None, got {render_mode!r}")
    upscale(np.zeros((1, 1, 3), np.uint8), render_size)  # validates render_size


def start_source(start: str, game: str, bank: StartBank, num_envs: int, context_length: int,
                 device: torch.device) -> StartSource:
    """The start source of a start mode: the bank on the device, or one real game per environment."""
    if check_start(start) == "ale":
        from gym_diamond.envs.ale_starts import AleStarts  # imports ale-py only when real starts are asked for

        return AleStarts(game, num_envs, context_length, device)
    return BankStarts(bank, device)


@dataclass
class OpenedDream:
    """A loaded world model's dream: its batched core, the game and its action names, and the start bank."""

    core: DreamCore
    game: str
    action_meanings: list[str]
    start_bank: StartBank


def open_dream(game: str | None, checkpoint: str | os.PathLike | None, *, num_envs: int = 1,
               device: torch.device | str | None = None, max_episode_steps: int | None = None,
               start: str = "bank", autoreset: bool = True, denoising_steps: int | None = None,
               sampler_start: str | None = None, precision: str | None = None, compile: bool = False,
               cuda_graphs: bool = False, rew_end_window: int | None = DEFAULT_WINDOW) -> OpenedDream:
    """Find and load the world model (``device`` None: CUDA when available) and build ``num_envs`` dreams in it.

    The loading options are ``gym_diamond.registration.load_dream``'s; ``start`` is where dreams start
    (:data:`START_MODES`); ``rew_end_window`` how the reward/termination LSTM is read over a long episode
    (:mod:`gym_diamond.envs.rew_end_reading`).
    """
    check_start(start)
    check_window(rew_end_window)
    ckpt = load_dream(game, checkpoint, resolve_device(device), denoising_steps=denoising_steps,
                      sampler_start=sampler_start, precision=precision, compile=compile, cuda_graphs=cuda_graphs)
    model = ckpt.world_model
    check_start_bank(ckpt.start_bank, model)
    source = start_source(start, ckpt.game, ckpt.start_bank, num_envs, model.config.denoiser.context_length,
                          model.device)
    core = DreamCore(model, source, num_envs=num_envs, max_episode_steps=max_episode_steps, autoreset=autoreset,
                     rew_end_window=rew_end_window)
    return OpenedDream(core, ckpt.game, list(ckpt.action_meanings), ckpt.start_bank)


class ActionMeanings:
    """``get_action_meanings`` for a face that holds ``action_meanings``, as ALE's environments answer it."""

    action_meanings: list[str]

    def get_action_meanings(self) -> list[str]:
        """The game's action names (ALE's minimal set), index = action."""
        return list(self.action_meanings)
