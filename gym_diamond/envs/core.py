"""DreamCore: n dream environments as tensors on one device, stepped in one batched call.

No gymnasium types here: the single env, the vector env and the SB3 adapter are thin faces over this.
Every random draw (initial noise, reward/termination sampling, start-context choice) comes from one
counter-based stream per environment (:class:`~gym_diamond.rng.BatchedGenerator`), so an
environment's dream does not depend on its batch neighbours and the same seed replays it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from gym_diamond.checkpoint import StartBank
from gym_diamond.cpu_memory import keep_freed_memory
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW, check_window, reading_for
from gym_diamond.errors import UserError
from gym_diamond.rng import BatchedGenerator
from gym_diamond.world_model import WorldModel


def to_model_frames(frames: Tensor) -> Tensor:
    """uint8 (..., h, w, c) -> float (..., c, h, w) in [-1, 1]."""
    return frames.movedim(-1, -3).float().div(127.5).sub(1)


def to_uint8_frames(frames: Tensor) -> Tensor:
    """float (..., c, h, w) in [-1, 1] -> uint8 (..., h, w, c); exact on quantised frames."""
    return frames.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1)


def available_devices() -> list[str]:
    """The devices this process can use: "cpu", then "cuda:0", "cuda:1", ... when CUDA works."""
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return ["cpu", *cuda]


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``None`` means "cuda" when available, else "cpu"; a device this machine lacks is a ValueError saying
    which it has (instead of torch's bare assertion at the first tensor moved there)."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"device must be like 'cpu', 'cuda' or 'cuda:1', got {device!r}") from e
    if resolved.type == "cuda":
        choose = f"devices here: {available_devices()}; pass one of them as device=, or leave it unset (cuda " \
                 "when available, else cpu)"
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA (a CPU build)" if torch.version.cuda is None
                   else "no CUDA GPU is visible (driver? CUDA_VISIBLE_DEVICES?)")
            raise UserError(f"device={str(device)!r}, but {why}; {choose}")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise UserError(f"device={str(device)!r}, but this machine has {torch.cuda.device_count()} CUDA "
                            f"device(s); {choose}")
    return resolved


class StartSource(Protocol):
    """Where dreams start: real contexts of L frames and the actions taken at them."""

    def starts(self, mask: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """uint8 frames (n, L, h, w, c) and actions (n, L); only the rows where ``mask`` is true are used.

        ``uniform`` (n,) are the environments' own random numbers in (0, 1) for choosing a start.
        """
        ...


def check_start_bank(bank: StartBank, world_model: WorldModel) -> None:
    """A bank's contexts must be the world model's: L frames of its size and channels."""
    denoiser = world_model.config.denoiser
    expected = (denoiser.context_length, denoiser.image_size, denoiser.image_size, denoiser.image_channels)
    if tuple(bank.frames.shape[1:]) != expected:
        raise UserError(f"start bank frames are (k, {', '.join(map(str, bank.frames.shape[1:]))}) but "
                        f"the world model needs (k, {', '.join(map(str, expected))})")


class BankStarts:
    """Start contexts drawn uniformly from a checkpoint's bank, kept on the device (no host sync)."""

    def __init__(self, bank: StartBank, device: torch.device) -> None:
        self.frames = torch.as_tensor(bank.frames, device=device)
        self.actions = torch.as_tensor(bank.actions, device=device)

    def starts(self, mask: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """One bank context per row, chosen by the row's own uniform number."""
        index = (uniform * len(self.frames)).long().clamp(max=len(self.frames) - 1)
        return self.frames[index], self.actions[index]


class GivenStart:
    """The same given context for every row: a dream started from frames the caller chose."""

    def __init__(self, frames: Tensor, actions: Tensor) -> None:
        self.frames, self.actions = frames, actions

    def starts(self, mask: Tensor, uniform: Tensor) -> tuple[Tensor, Tensor]:
        """The given (L, h, w, c) frames and (L,) actions, repeated for each of the n rows."""
        n = len(mask)
        return self.frames.expand(n, *self.frames.shape), self.actions.expand(n, *self.actions.shape)


@dataclass(frozen=True)
class DreamStep:
    """What one batched step returns; all tensors on the core's device.

    ``obs`` is the observation to act on next: for an environment that ended this step it is already
    the first frame of its new episode, and ``final_obs`` holds the frame the episode ended on.
    """

    obs: Tensor  # (n, h, w, c) uint8
    reward: Tensor  # (n,) float32 in {-1, 0, 1}
    terminated: Tensor  # (n,) bool
    truncated: Tensor  # (n,) bool
    final_obs: Tensor  # (n, h, w, c) uint8: the frame each environment reached this step, before any reset
    episode_length: Tensor  # (n,) int64: steps taken in the episode, counting this one (before the reset)

    @property
    def done(self) -> Tensor:
        return self.terminated | self.truncated


class DreamCore:
    """The dream state of n environments and its batched ``reset``/``step``.

    One ``step`` makes one sampler call (``num_steps`` U-Net passes at batch n) and one reward/
    termination call; environments that terminate or reach ``max_episode_steps`` restart in the same
    call from a fresh start context, with the reward/termination LSTM warmed up on it (unless
    ``autoreset=False``, for a single gymnasium environment whose caller resets it).

    ``rew_end_window``: the reward and termination are read from two LSTM states restarted in turn every that
    many transitions (DIAMOND's 19 by default, the length the model was trained on), or from one state carried
    over the whole episode where None (:mod:`gym_diamond.envs.rew_end_reading`).

    ``starts`` is where dreams start: a :class:`StartSource` (``BankStarts``, ``GivenStart``, real games),
    or a checkpoint's :class:`~gym_diamond.checkpoint.StartBank`, drawn from uniformly.
    """

    def __init__(self, world_model: WorldModel, starts: StartSource | StartBank, num_envs: int = 1,
                 max_episode_steps: int | None = None, autoreset: bool = True,
                 rew_end_window: int | None = DEFAULT_WINDOW) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise UserError(f"num_envs must be a positive integer, got {num_envs!r}")
        if max_episode_steps is not None and (not isinstance(max_episode_steps, int) or max_episode_steps < 1):
            raise UserError(f"max_episode_steps must be a positive integer or None, got {max_episode_steps!r}")
        check_window(rew_end_window)
        L = world_model.config.denoiser.context_length
        h = world_model.config.denoiser.image_size
        if isinstance(starts, StartBank):
            check_start_bank(starts, world_model)
            starts = BankStarts(starts, world_model.device)
        elif not callable(getattr(starts, "starts", None)):
            raise TypeError(f"starts must be a StartSource (with a starts(mask, uniform) method) or a StartBank, "
                            f"got {type(starts).__name__}")
        self.model = world_model.eval()
        self.device = world_model.device
        if self.device.type == "cpu":
            keep_freed_memory()  # every dream's activations reuse freed memory (gym_diamond.cpu_memory)
        self.num_envs = num_envs
        self.num_actions = world_model.config.num_actions
        self.max_episode_steps = max_episode_steps
        self.autoreset = autoreset
        self.start_source: StartSource = starts
        n, c = num_envs, world_model.config.denoiser.image_channels
        self.frames = torch.zeros(n, L, c, h, h, device=self.device)
        self.actions = torch.zeros(n, L, dtype=torch.long, device=self.device)
        # the reward/termination LSTM state(s), read within the length they were trained on (rew_end_reading)
        self.rew_end_reading = reading_for(torch.no_grad()(world_model.rew_end.burn_in),
                                           world_model.rew_end.initial_state(n, self.device), rew_end_window)
        self.episode_steps = torch.zeros(n, dtype=torch.long, device=self.device)
        self.generator = BatchedGenerator(torch.zeros(n, dtype=torch.long), device=self.device)
        self.needs_reset = True
        self.closed = False
        self._invalid_actions = torch.zeros((), dtype=torch.bool, device=self.device)
        self._check_next_actions = True

    def close(self, sources: list[StartSource] | None = None) -> None:
        """Close the start source (and ``sources``, others a face kept) and refuse further resets and steps."""
        if self.closed:
            return
        self.closed = True
        for source in {id(s): s for s in [self.start_source, *(sources or [])]}.values():
            if hasattr(source, "close"):
                source.close()

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this dream environment was closed: make a new one (gym.make, gym.make_vec, "
                               "DreamSB3VecEnv) to go on dreaming")

    # ---------------------------------------------------------------- reset
    def reset(self, seed: int | list[int] | None = None, mask: Tensor | np.ndarray | None = None) -> Tensor:
        """Start new episodes for the environments in ``mask`` (all by default); returns obs (n, h, w, c) uint8.

        ``seed``: an int seeds environment i with ``seed + i``; a list gives one seed each; None draws
        fresh seeds from the OS on the first reset and otherwise continues the environments' streams.
        """
        self._check_open()
        self._check_next_actions = True
        self.raise_invalid_actions()
        mask = self._check_mask(mask)
        if seed is not None or self.needs_reset:
            self.generator.reseed(mask, self._seeds(seed))
        self._restart(mask)
        self.needs_reset = False
        return to_uint8_frames(self.frames[:, -1])

    def _seeds(self, seed: int | list[int] | None) -> Tensor:
        n = self.num_envs
        if seed is None:
            return torch.as_tensor(np.random.SeedSequence().generate_state(n, np.uint32).astype(np.int64))
        if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            if seed < 0:
                raise UserError(f"seed must be a non-negative integer, got {seed}")
            return torch.arange(n, dtype=torch.long) + int(seed)
        seeds = list(seed)
        if len(seeds) != n or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in seeds):
            raise UserError(f"seed must be an int, None or {n} non-negative ints, got {seed!r}")
        return torch.as_tensor(seeds, dtype=torch.long)

    def _check_mask(self, mask: Tensor | np.ndarray | None) -> Tensor:
        if mask is None:
            return torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        mask = torch.as_tensor(mask, device=self.device)
        if mask.dtype != torch.bool or tuple(mask.shape) != (self.num_envs,):
            raise UserError(f"reset mask must be bool of shape ({self.num_envs},), got {mask.dtype} "
                            f"{tuple(mask.shape)}")
        return mask

    def _restart(self, mask: Tensor) -> None:
        """Replace the masked environments' histories with start contexts and warm their LSTM up on them.

        Every environment draws its start number whether or not it restarts, so its stream does not
        depend on when the others end. On the CPU only the restarting rows are burnt in; elsewhere all
        rows are, then selected, so that nothing waits on the host to learn which rows ended.
        """
        uniform = self.generator.uniform()
        start_frames, start_actions = self.start_source.starts(mask, uniform)
        if self.device.type == "cpu":
            rows = mask.nonzero().squeeze(1)
            if len(rows) == 0:
                return
            context = to_model_frames(start_frames[rows])
            actions = start_actions[rows].long()
            self.model.check_inputs(context, actions)
            self.rew_end_reading.restart(mask, context, actions, rows)
            self.frames[rows] = context
            self.actions[rows] = actions
            self.episode_steps[rows] = 0
            return
        context = to_model_frames(start_frames)
        actions = start_actions.long()
        self.model.check_inputs(context, actions)
        self.rew_end_reading.restart(mask, context, actions)
        self.frames = torch.where(mask.view(-1, 1, 1, 1, 1), context, self.frames)
        self.actions = torch.where(mask.view(-1, 1), actions, self.actions)
        self.episode_steps = torch.where(mask, torch.zeros_like(self.episode_steps), self.episode_steps)

    # ----------------------------------------------------------------- step
    def check_actions(self, actions: Tensor | np.ndarray | list[int]) -> Tensor:
        """Validate a batch of actions and return it as an int64 tensor (n,) on the device.

        Host actions are checked on the host. Actions already on a GPU are checked there without a host
        sync, so a step can run inside a CUDA graph: the first batch after each ``reset`` is checked
        at once; later ones are clamped into range and any that was out of range raises at the next
        ``reset`` or :meth:`raise_invalid_actions` (reading the flag is the one sync).
        """
        if isinstance(actions, Tensor):
            if actions.device != self.device:
                raise UserError(f"actions are on {actions.device} but the dream runs on {self.device}")
        else:
            actions = torch.as_tensor(np.asarray(actions))
        if actions.dtype.is_floating_point or actions.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise TypeError(f"actions must be integers, got {actions.dtype}")
        if tuple(actions.shape) != (self.num_envs,):
            raise UserError(f"expected {self.num_envs} actions of shape ({self.num_envs},), got shape "
                            f"{tuple(actions.shape)}")
        invalid = (actions < 0) | (actions >= self.num_actions)
        if actions.device.type == "cpu" or self._check_next_actions:
            self._check_next_actions = False
            if bool(invalid.any()):
                raise UserError(f"actions must be in [0, {self.num_actions}), got {actions[invalid].tolist()}")
            return actions.to(self.device, torch.long)
        self._invalid_actions |= invalid.any()  # stays on the device: no sync
        return actions.long().clamp(0, self.num_actions - 1)

    def raise_invalid_actions(self) -> None:
        """Raise if GPU actions out of range were given (and clamped) since the last check; syncs once."""
        if bool(self._invalid_actions):
            self._invalid_actions.zero_()
            raise UserError(f"actions outside [0, {self.num_actions}) were given since the last check; they "
                             "were clamped into range")

    def step(self, actions: Tensor | np.ndarray | list[int]) -> DreamStep:
        """Advance every environment by one imagined step; ended ones restart in the same call."""
        self._check_open()
        if self.needs_reset:
            raise RuntimeError("call reset() before step()")
        actions = self.check_actions(actions)
        self.actions[:, -1] = actions
        state, read_from = self.rew_end_reading.before_step()
        out = self.model.imagine_step(self.frames, self.actions, state, self.generator, read_from=read_from)
        self.frames = torch.cat([self.frames[:, 1:], out.next_frame[:, None]], dim=1)
        self.actions = torch.cat([self.actions[:, 1:], torch.zeros_like(self.actions[:, :1])], dim=1)
        self.rew_end_reading.after_step(out.state)
        self.episode_steps = self.episode_steps + 1
        terminated = out.terminated
        if self.max_episode_steps is None:
            truncated = torch.zeros_like(terminated)
        else:
            truncated = (self.episode_steps >= self.max_episode_steps) & ~terminated
        episode_length = self.episode_steps.clone()
        final_obs = to_uint8_frames(out.next_frame)
        if self.autoreset:
            self._restart(terminated | truncated)
        else:  # the start draw a vector env makes every step, so a single dream's stream stays the same as its
            self.generator.uniform()  # environment 0's in a vector env seeded alike, until an episode ends
        return DreamStep(to_uint8_frames(self.frames[:, -1]), out.reward, terminated, truncated, final_obs,
                         episode_length)
