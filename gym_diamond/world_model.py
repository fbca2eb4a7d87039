"""WorldModel: the denoiser, the reward/termination model and the sampler, as one batched step."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from gym_diamond.acceleration import Acceleration
from gym_diamond.config import SamplerConfig, WorldModelConfig
from gym_diamond.cpu_memory import keep_freed_memory
from gym_diamond.diffusion import integrate, sampler_noise
from gym_diamond.errors import UserError
from gym_diamond.nn.blocks import LSTMState
from gym_diamond.nn.denoiser import Denoiser
from gym_diamond.nn.rew_end import RewEndModel
from gym_diamond.rng import Generator, rand


@dataclass(frozen=True)
class ImaginedStep:
    next_frame: Tensor  # (n, c, h, w), float in [-1, 1], quantised to 256 levels
    reward: Tensor  # (n,) float32 in {-1, 0, 1}
    terminated: Tensor  # (n,) bool
    state: LSTMState  # the reward/termination model's LSTM state(s) after this step (k * n rows where k were given)


def sample_categorical(logits: Tensor, uniform: Tensor) -> Tensor:
    """Inverse-CDF sampling: class per row of logits (n, k) from uniforms (n,), so any generator works."""
    cdf = logits.float().softmax(-1).cumsum(-1)
    return (uniform[:, None] > cdf).sum(-1).clamp(max=logits.shape[-1] - 1)


def read_logits(logits: Tensor, read_from: Tensor | None) -> Tensor:
    """Each environment's logits from the state it reads: logits (k * n, classes) of k states per environment
    (state j of environment i at row j * n + i), ``read_from`` (n,) the state of each; None: k is 1."""
    if read_from is None:
        return logits
    n = read_from.shape[0]
    stacked = logits.view(-1, n, logits.shape[-1])
    return stacked.gather(0, read_from.view(1, n, 1).expand(1, n, logits.shape[-1]))[0]


def read_transition(rew_end: RewEndModel, last: Tensor, action: Tensor, next_frame: Tensor, state: LSTMState,
                    read_from: Tensor | None) -> tuple[Tensor, Tensor, LSTMState]:
    """One transition of n environments (``last`` and ``next_frame`` (n, 1, c, h, w), ``action`` (n, 1)) read by the
    reward/termination model from k LSTM states each (k * n rows, stepped in one call): the reward and end logits
    (n, classes) of the state each environment reads (:func:`read_logits`) and the k states after it."""
    copies = state[0].shape[1] // last.shape[0]
    if copies > 1:
        last, action, next_frame = (t.repeat(copies, *([1] * (t.ndim - 1))) for t in (last, action, next_frame))
    out = rew_end(last, action, next_frame, state)
    return read_logits(out.reward_logits[:, 0], read_from), read_logits(out.end_logits[:, 0], read_from), out.state


class WorldModel(nn.Module):
    """Imagines the next frame, reward and termination for a batch of environments in one call."""

    def __init__(self, config: WorldModelConfig) -> None:
        super().__init__()
        self.config = config
        d = config.denoiser
        self.denoiser = Denoiser(d, config.num_actions)
        self.rew_end = RewEndModel(config.rew_end, config.num_actions, d.image_channels, d.image_size)
        self.acceleration = Acceleration()
        self._step = self._imagine

    def accelerate(self, acceleration: Acceleration | None = None) -> WorldModel:
        """Run imagination with these speed switches (default: ``Acceleration.default_for(device)``).

        Call it after moving the model to its device; training is unaffected (it uses the modules).
        """
        acceleration = acceleration or Acceleration.default_for(self.device)
        acceleration.check_device(self.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # activations reuse freed memory instead of faulting in fresh pages
        self.to(memory_format=torch.channels_last if acceleration.channels_last else torch.contiguous_format)
        self.acceleration = acceleration
        if acceleration.compile:
            mode = "reduce-overhead" if acceleration.cuda_graphs else None
            self._step = torch.compile(self._imagine, mode=mode, dynamic=False)
        else:
            self._step = self._imagine
        return self

    @property
    def device(self) -> torch.device:
        return self.rew_end.action_emb.weight.device

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        d = self.config.denoiser
        return d.image_channels, d.image_size, d.image_size

    def check_inputs(self, frames: Tensor, actions: Tensor) -> None:
        """Raise a clear error unless frames: (n, L, c, h, w) float and actions: (n, L) integer, one device."""
        L = self.config.denoiser.context_length
        if not isinstance(frames, Tensor) or not isinstance(actions, Tensor):
            raise TypeError(f"frames and actions must be torch tensors, got {type(frames).__name__} "
                            f"and {type(actions).__name__}")
        if frames.ndim != 5 or tuple(frames.shape[1:]) != (L, *self.frame_shape):
            raise UserError(f"frames must be (n, {L}, {', '.join(map(str, self.frame_shape))}), "
                            f"got {tuple(frames.shape)}")
        if not frames.is_floating_point():
            raise TypeError(f"frames must be float in [-1, 1], got {frames.dtype}")
        if tuple(actions.shape) != tuple(frames.shape[:2]):
            raise UserError(f"actions must be (n, {L}) = {tuple(frames.shape[:2])}, got {tuple(actions.shape)}")
        if actions.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"actions must be int64, got {actions.dtype}")
        if frames.device != self.device or actions.device != self.device:
            raise UserError(f"frames ({frames.device}) and actions ({actions.device}) must be on the "
                            f"world model's device {self.device}")

    @torch.no_grad()
    def burn_in(self, frames: Tensor, actions: Tensor) -> LSTMState:
        """The reward/termination LSTM state after the real context frames: (n, L, c, h, w), actions (n, L)."""
        self.check_inputs(frames, actions)
        return self.rew_end.burn_in(frames, actions)

    @torch.no_grad()
    def imagine_step(self, frames: Tensor, actions: Tensor, lstm_state: LSTMState | None = None,
                     generator: Generator | None = None, sampler: SamplerConfig | None = None,
                     read_from: Tensor | None = None) -> ImaginedStep:
        """One imagined step for n environments: one sampler call and one reward/termination call.

        frames: (n, L, c, h, w) in [-1, 1], the last L frames; actions: (n, L), the action taken at each,
        the last one being the action to imagine. ``generator`` (a torch.Generator or a
        BatchedGenerator with one stream per environment) makes the step reproducible. ``lstm_state`` may hold
        k states per environment (k * n rows, state j of environment i at row j * n + i), all stepped in the same
        call, with ``read_from`` (n,) naming the one each environment's reward and termination come from
        (``gym_diamond.envs.rew_end_reading``).
        """
        self.check_inputs(frames, actions)
        n = frames.shape[0]
        actions = actions.long()
        if lstm_state is None:
            lstm_state = self.burn_in(frames, actions)
        rows = lstm_state[0].shape[1]
        if rows != n and (read_from is None or rows % n or tuple(read_from.shape) != (n,)):
            raise UserError(f"lstm_state holds {rows} rows for {n} environments: give one state each, or k each "
                            f"with read_from of shape ({n},)")
        config = sampler if sampler is not None else self.config.sampler
        # every random number is drawn here, in this order, so the step itself is a pure function
        noises = sampler_noise((n, *self.frame_shape), config, generator, self.device)
        uniforms = torch.stack([rand((n,), generator, self.device), rand((n,), generator, self.device)])
        if self.acceleration.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        next_frame, reward, terminated, h, c = self._step(frames, actions, lstm_state[0], lstm_state[1], noises,
                                                          uniforms, config, read_from)
        if self.acceleration.cuda_graphs:  # the graph's outputs are overwritten by its next replay
            next_frame, reward, terminated, h, c = (t.clone() for t in (next_frame, reward, terminated, h, c))
        return ImaginedStep(next_frame, reward, terminated, (h, c))

    def _imagine(self, frames: Tensor, actions: Tensor, h: Tensor, c: Tensor, noises: list[Tensor],
                 uniforms: Tensor, config: SamplerConfig,
                 read_from: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """The imagined step without randomness: what ``torch.compile`` captures as one graph."""
        acceleration = self.acceleration

        def denoise(x: Tensor, sigma: Tensor) -> Tensor:
            return self.denoiser.denoise(x, sigma, frames, actions, autocast=acceleration.autocast,
                                         quantization=config.quantization)

        next_frame = integrate(denoise, noises, config)
        with acceleration.autocast(self.device):
            reward_logits, end_logits, state = read_transition(self.rew_end, frames[:, -1:], actions[:, -1:],
                                                               next_frame[:, None], (h, c), read_from)
        reward_class = sample_categorical(reward_logits, uniforms[0])
        end_class = sample_categorical(end_logits, uniforms[1])
        h, c = (t.float() for t in state)
        return next_frame, (reward_class - 1).float(), end_class.bool(), h, c

    def num_parameters(self) -> dict[str, int]:
        """Parameter counts of the denoiser and of the reward/termination model."""
        return {
            "denoiser": sum(p.numel() for p in self.denoiser.parameters()),
            "rew_end": sum(p.numel() for p in self.rew_end.parameters()),
        }
