"""Configuration dataclasses for the DIAMOND world model.

Defaults are the paper's (Alonso et al. 2024, appendix; DIAMOND's ``config/``), so
``WorldModelConfig(num_actions=6)`` is the published model. Every config validates itself on
construction and round-trips through plain dicts, which is how checkpoints store it (JSON, never
pickles).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from gym_diamond.errors import UserError

T = TypeVar("T")

GROUP_SIZE = 32  # group norm uses groups of 32 channels (at least one group)

ATTENTION_RESIDUALS = ("normalized", "input")
"""What self-attention adds its output to: DIAMOND's normalised input (its ``SelfAttention2d`` reassigns
``x = norm(x)`` before the residual; its weights were trained so), or the raw input (gym-diamond 0.1)."""
QUANTIZATIONS = ("floor", "round")
"""How a denoised frame becomes one of 256 levels: DIAMOND truncates (``.byte()``), gym-diamond 0.1 rounded."""


def _check(condition: bool, cls: str, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise UserError(f"{cls}.{name}={value!r} is invalid: expected {expected}")


def _check_channels(cls: str, name: str, channels: tuple[int, ...]) -> None:
    _check(len(channels) > 0, cls, name, channels, "at least one level")
    for c in channels:
        _check(isinstance(c, int) and c > 0, cls, name, channels, "positive integers")
        _check(c < GROUP_SIZE or c % GROUP_SIZE == 0, cls, name, channels,
               f"channel counts below {GROUP_SIZE} or divisible into groups of {GROUP_SIZE}")


class _DictMixin:
    """``to_dict``/``from_dict`` for (nested) config dataclasses; tuples survive JSON as lists."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[T], data: dict[str, Any]) -> T:
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__}.from_dict expects a dict, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise UserError(f"{cls.__name__} has no field(s) {unknown}; known: {sorted(fields)}")
        kwargs = {}
        for name, value in data.items():
            sub = _NESTED.get((cls.__name__, name))
            if sub is not None:
                value = sub.from_dict(value)
            elif isinstance(value, list):
                value = tuple(value)
            kwargs[name] = value
        return cls(**kwargs)


@dataclass(frozen=True)
class UNetConfig(_DictMixin):
    """The denoiser's network F: a conditional U-Net with adaptive group norm."""

    channels: tuple[int, ...] = (64, 64, 64, 64)
    blocks_per_level: int = 2
    cond_channels: int = 256
    attn_head_dim: int = 8
    mid_attention: bool = True
    attention_residual: str = "normalized"

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check_channels(n, "channels", self.channels)
        _check(self.attention_residual in ATTENTION_RESIDUALS, n, "attention_residual", self.attention_residual,
               f"one of {ATTENTION_RESIDUALS}")
        _check(self.blocks_per_level >= 1, n, "blocks_per_level", self.blocks_per_level, ">= 1")
        _check(self.cond_channels >= 2 and self.cond_channels % 2 == 0, n, "cond_channels",
               self.cond_channels, "an even integer >= 2")
        _check(self.attn_head_dim >= 1 and self.channels[-1] % self.attn_head_dim == 0, n,
               "attn_head_dim", self.attn_head_dim, f"a divisor of the last level's {self.channels[-1]} channels")


# DenoiserConfig's fields that shape its training (the distribution of the training noise) and not the network: a run
# may continue another's weights with other values
TRAINING_NOISE_FIELDS = ("train_sigma_loc", "train_sigma_scale")


@dataclass(frozen=True)
class DenoiserConfig(_DictMixin):
    """EDM preconditioning and training noise distribution for next-frame diffusion."""

    context_length: int = 4
    image_channels: int = 3
    image_size: int = 64
    sigma_data: float = 0.5
    sigma_offset_noise: float = 0.3
    train_sigma_loc: float = -0.4
    train_sigma_scale: float = 1.2
    train_sigma_min: float = 2e-3
    train_sigma_max: float = 20.0
    unet: UNetConfig = field(default_factory=UNetConfig)

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(self.context_length >= 1, n, "context_length", self.context_length, ">= 1")
        _check(self.image_channels >= 1, n, "image_channels", self.image_channels, ">= 1")
        levels = len(self.unet.channels)
        _check(self.image_size % 2 ** (levels - 1) == 0, n, "image_size", self.image_size,
               f"divisible by 2**{levels - 1} for a {levels}-level U-Net")
        _check(self.sigma_data > 0, n, "sigma_data", self.sigma_data, "> 0")
        _check(self.sigma_offset_noise >= 0, n, "sigma_offset_noise", self.sigma_offset_noise, ">= 0")
        _check(self.train_sigma_scale > 0, n, "train_sigma_scale", self.train_sigma_scale, "> 0")
        _check(0 < self.train_sigma_min < self.train_sigma_max, n, "train_sigma_min",
               self.train_sigma_min, f"in (0, train_sigma_max={self.train_sigma_max})")
        _check(self.unet.cond_channels % self.context_length == 0, n, "context_length", self.context_length,
               f"a divisor of unet.cond_channels={self.unet.cond_channels} (one action embedding per step)")


SAMPLER_ORDERS = (1, 2)
SAMPLER_STARTS = ("unit", "sigma_max")
"""Where a sampler run starts: DIAMOND's unit-variance noise (its sampler draws ``randn`` and starts at sigma_max
with it), or EDM's noise scaled to sigma_max, as the denoiser saw at that sigma in training."""


@dataclass(frozen=True)
class SamplerConfig(_DictMixin):
    """Karras-schedule sampler: order 1 is Euler (DIAMOND's default), 2 is Heun.

    ``start`` scales the start noise: ``"unit"`` (DIAMOND's) or ``"sigma_max"`` (EDM's). With one Euler step both
    give about the one-step mean; with more, ``"sigma_max"`` leaves noise at the right level for the later steps to
    pick one of several outcomes (a bounce's angle) instead of sharpening their mean.
    """

    num_steps: int = 3
    sigma_min: float = 2e-3
    sigma_max: float = 5.0
    rho: float = 7.0
    order: int = 1
    s_churn: float = 0.0
    s_tmin: float = 0.0
    s_tmax: float = float("inf")
    s_noise: float = 1.0
    quantization: str = "floor"
    start: str = "unit"

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(isinstance(self.num_steps, int) and self.num_steps >= 1, n, "num_steps", self.num_steps,
               "an integer >= 1 denoising steps")
        _check(0 < self.sigma_min < self.sigma_max, n, "sigma_min", self.sigma_min,
               f"in (0, sigma_max={self.sigma_max})")
        _check(self.rho > 0, n, "rho", self.rho, "> 0")
        _check(self.order in SAMPLER_ORDERS, n, "order", self.order, f"one of {SAMPLER_ORDERS} (Euler, Heun)")
        _check(self.s_churn >= 0, n, "s_churn", self.s_churn, ">= 0")
        _check(self.s_noise >= 0, n, "s_noise", self.s_noise, ">= 0")
        _check(self.quantization in QUANTIZATIONS, n, "quantization", self.quantization, f"one of {QUANTIZATIONS}")
        _check(self.start in SAMPLER_STARTS, n, "start", self.start, f"one of {SAMPLER_STARTS}")


@dataclass(frozen=True)
class RewEndConfig(_DictMixin):
    """Reward (sign: -1/0/+1) and termination classifier: CNN encoder + LSTM.

    ``norm_out`` adds a group norm and SiLU after the encoder's attention blocks (gym-diamond 0.1's
    variant; DIAMOND has none).
    """

    channels: tuple[int, ...] = (32, 32, 32, 32)
    blocks_per_level: int = 2
    cond_channels: int = 128
    lstm_dim: int = 512
    attn_head_dim: int = 8
    attention_residual: str = "normalized"
    norm_out: bool = False

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check_channels(n, "channels", self.channels)
        _check(self.attention_residual in ATTENTION_RESIDUALS, n, "attention_residual", self.attention_residual,
               f"one of {ATTENTION_RESIDUALS}")
        _check(self.blocks_per_level >= 1, n, "blocks_per_level", self.blocks_per_level, ">= 1")
        _check(self.cond_channels >= 1, n, "cond_channels", self.cond_channels, ">= 1")
        _check(self.lstm_dim >= 1, n, "lstm_dim", self.lstm_dim, ">= 1")
        _check(self.channels[-1] % self.attn_head_dim == 0, n, "attn_head_dim", self.attn_head_dim,
               f"a divisor of the last level's {self.channels[-1]} channels")


@dataclass(frozen=True)
class WorldModelConfig(_DictMixin):
    """Everything needed to rebuild a world model: its networks and how it samples."""

    num_actions: int = 18
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    rew_end: RewEndConfig = field(default_factory=RewEndConfig)

    def __post_init__(self) -> None:
        _check(isinstance(self.num_actions, int) and self.num_actions >= 1, type(self).__name__,
               "num_actions", self.num_actions, "an integer >= 1")

    def replace(self, **changes: Any) -> WorldModelConfig:
        """A copy with the given fields changed (configs are frozen)."""
        return dataclasses.replace(self, **changes)

    def with_denoising_steps(self, num_steps: int) -> WorldModelConfig:
        """A copy that samples with ``num_steps`` denoising steps (fewer: faster, blurrier)."""
        check_denoising_steps(num_steps)
        return self.replace(sampler=dataclasses.replace(self.sampler, num_steps=num_steps))

    def with_sampler_start(self, start: str) -> WorldModelConfig:
        """A copy whose sampler starts from ``start`` noise (``SAMPLER_STARTS``: DIAMOND's unit or EDM's sigma_max)."""
        return self.replace(sampler=dataclasses.replace(self.sampler, start=start))


def check_denoising_steps(num_steps: object) -> None:
    """A user's denoising-step override must be a positive int (the error names the argument)."""
    if not isinstance(num_steps, int) or num_steps < 1:
        raise UserError(f"denoising_steps must be a positive int, got {num_steps!r}")


def check_sampler_start(start: object) -> None:
    """A user's sampler-start override must be one of ``SAMPLER_STARTS`` (the error names the argument)."""
    if start not in SAMPLER_STARTS:
        raise UserError(f"sampler_start must be one of {SAMPLER_STARTS}, got {start!r}")


def small_world_model_config(num_actions: int = 18) -> WorldModelConfig:
    """A sixth of the paper model's compute per step (3.1 vs 18.7 GFLOP): half the channels, one block per level."""
    return WorldModelConfig(
        num_actions=num_actions,
        denoiser=DenoiserConfig(unet=UNetConfig(channels=(32, 32, 32, 32), blocks_per_level=1, cond_channels=128)),
        rew_end=RewEndConfig(channels=(16, 16, 16, 16), blocks_per_level=1, cond_channels=64, lstm_dim=128),
    )


def light_world_model_config(num_actions: int = 18) -> WorldModelConfig:
    """A CPU-sized world model: three U-Net levels of 16/32/32 channels, small reward/termination model.

    About a tenth of the small model's denoiser compute at 64x64; the configuration behind the
    CPU-trained checkpoints (see benchmarks/README.md for its speed and fidelity).
    """
    return WorldModelConfig(
        num_actions=num_actions,
        denoiser=DenoiserConfig(unet=UNetConfig(channels=(16, 32, 32), blocks_per_level=1, cond_channels=64)),
        rew_end=RewEndConfig(channels=(8, 8, 16, 16), blocks_per_level=1, cond_channels=32, lstm_dim=64),
    )


def light_wide_world_model_config(num_actions: int = 18) -> WorldModelConfig:
    """``light`` with 32 channels at full resolution, where the ball is a pixel or two: its first level reads 16
    context frames (51 input channels with the noisy frame) through 16 channels. About 2.4x light's cost per update.
    """
    light = light_world_model_config(num_actions)
    wide = dataclasses.replace(light.denoiser.unet, channels=(32, *light.denoiser.unet.channels[1:]))
    return light.replace(denoiser=dataclasses.replace(light.denoiser, unet=wide))


def tiny_world_model_config(num_actions: int = 3, image_size: int = 64) -> WorldModelConfig:
    """A world model of a few thousand parameters, for tests and smoke runs."""
    return WorldModelConfig(
        num_actions=num_actions,
        denoiser=DenoiserConfig(image_size=image_size, unet=UNetConfig(
            channels=(8, 8, 8), blocks_per_level=1, cond_channels=16, attn_head_dim=4)),
        rew_end=RewEndConfig(channels=(4, 4, 4, 4), blocks_per_level=1, cond_channels=8, lstm_dim=16,
                             attn_head_dim=4),
    )


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


ACTOR_CRITIC_LEVELS = 4  # the actor-critic encoder's poolings take 64x64 down to 4x4


@dataclass(frozen=True)
class ActorCriticConfig(_DictMixin):
    """Hyperparameters of DIAMOND's actor-critic; the defaults are the paper's.

    ``channels`` are the widths of the 4 residual levels (each followed by 2x2 max pooling, so a 64x64
    frame ends as ``channels[-1] x 4 x 4`` features); ``gamma``, ``lambda_`` and ``entropy_weight`` are the
    loss's (``training.agents.losses``). Shrink ``channels``/``lstm_dim`` for tests on a CPU.
    """

    num_actions: int | None = None  # None: a size for any game (a preset's); ``for_actions`` sets it
    channels: tuple[int, ...] = (32, 32, 64, 64)
    lstm_dim: int = 512
    gamma: float = 0.985
    lambda_: float = 0.95
    entropy_weight: float = 0.001

    def __post_init__(self) -> None:
        n = type(self).__name__
        _check(self.num_actions is None or (_is_int(self.num_actions) and self.num_actions >= 1), n, "num_actions",
               self.num_actions, "an integer >= 1 (or None, set later with for_actions)")
        if isinstance(self.channels, list):  # accept lists (JSON) but store a hashable tuple
            object.__setattr__(self, "channels", tuple(self.channels))
        _check(isinstance(self.channels, tuple) and len(self.channels) == ACTOR_CRITIC_LEVELS, n, "channels",
               self.channels, f"a tuple of {ACTOR_CRITIC_LEVELS} channel counts (64x64 pooled down to 4x4)")
        _check(all(_is_int(c) for c in self.channels), n, "channels", self.channels, "positive integers")
        _check_channels(n, "channels", self.channels)
        _check(_is_int(self.lstm_dim) and self.lstm_dim >= 1, n, "lstm_dim", self.lstm_dim, "an integer >= 1")
        _check(_is_real(self.gamma) and 0.0 <= self.gamma <= 1.0, n, "gamma", self.gamma, "a number in [0, 1]")
        _check(_is_real(self.lambda_) and 0.0 <= self.lambda_ <= 1.0, n, "lambda_", self.lambda_,
               "a number in [0, 1]")
        _check(_is_real(self.entropy_weight) and self.entropy_weight >= 0.0, n, "entropy_weight",
               self.entropy_weight, "a finite number >= 0")

    def for_actions(self, num_actions: int) -> ActorCriticConfig:
        """This size of actor-critic for a game of ``num_actions`` actions."""
        return dataclasses.replace(self, num_actions=num_actions)


MODEL_SIZES: dict[str, Callable[[int], WorldModelConfig]] = {
    "paper": lambda num_actions: WorldModelConfig(num_actions=num_actions),
    "small": small_world_model_config,
    "light": light_world_model_config,
    "light-wide": light_wide_world_model_config,
    "tiny": tiny_world_model_config,
}
"""The world-model sizes by name, each a function of the action count: the one table the training commands,
presets and benchmarks read."""


_NESTED: dict[tuple[str, str], type[_DictMixin]] = {
    ("DenoiserConfig", "unet"): UNetConfig,
    ("WorldModelConfig", "denoiser"): DenoiserConfig,
    ("WorldModelConfig", "sampler"): SamplerConfig,
    ("WorldModelConfig", "rew_end"): RewEndConfig,
}
