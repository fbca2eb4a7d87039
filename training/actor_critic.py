"""DIAMOND's actor-critic: the network, lambda-returns and the REINFORCE loss.

The agent is trained only in imagination (DIAMOND's ``src/models/actor_critic.py``): a small convolutional
encoder, an LSTM cell of 512 units and two zero-initialised linear heads (policy logits, value). The loss
is REINFORCE with a value baseline on lambda-returns, an MSE value loss towards the same returns and a
small entropy bonus. Rolling the policy out in the dream is ``training/imagination.py``'s job; this module
only holds what does not depend on the world model, so it can be tested on its own.

Tensors: frames are float in [-1, 1], channels first, ``(n, 3, 64, 64)``; time-major sequences are
batch-first, ``(n, H, ...)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.nn.blocks import init_lstm

__all__ = [
    "ActorCriticConfig",
    "ActorCritic",
    "ActorCriticLosses",
    "LSTMState",
    "lambda_returns",
    "actor_critic_loss",
    "rollout_loss",
]

FRAME_SHAPE = (3, 64, 64)  # the encoder's 4 poolings take 64x64 down to 4x4
_NUM_LEVELS = 4
_GROUP_SIZE = 32  # group norm uses groups of 32 channels (at least one group)

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (n, lstm_dim)


# ----------------------------------------------------------------------------------------------- config


def _check(condition: bool, name: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"ActorCriticConfig.{name}={value!r} is invalid: expected {expected}")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True)
class ActorCriticConfig:
    """Hyperparameters of DIAMOND's actor-critic; the defaults are the paper's.

    ``channels`` are the widths of the 4 residual levels (each followed by 2x2 max pooling, so a 64x64
    frame ends as ``channels[-1] x 4 x 4`` features); ``gamma``, ``lambda_`` and ``entropy_weight`` are the
    loss's (see :func:`lambda_returns` and :func:`actor_critic_loss`). Shrink ``channels``/``lstm_dim``
    for tests on a CPU.
    """

    num_actions: int
    channels: tuple[int, ...] = (32, 32, 64, 64)
    lstm_dim: int = 512
    gamma: float = 0.985
    lambda_: float = 0.95
    entropy_weight: float = 0.001

    def __post_init__(self) -> None:
        _check(_is_int(self.num_actions) and self.num_actions >= 1, "num_actions", self.num_actions,
               "an integer >= 1")
        if isinstance(self.channels, list):  # accept lists (JSON) but store a hashable tuple
            object.__setattr__(self, "channels", tuple(self.channels))
        _check(isinstance(self.channels, tuple) and len(self.channels) == _NUM_LEVELS, "channels",
               self.channels, f"a tuple of {_NUM_LEVELS} channel counts (64x64 pooled down to 4x4)")
        _check(all(_is_int(c) and c >= 1 for c in self.channels), "channels", self.channels,
               "positive integers")
        _check(_is_int(self.lstm_dim) and self.lstm_dim >= 1, "lstm_dim", self.lstm_dim, "an integer >= 1")
        _check(_is_real(self.gamma) and 0.0 <= self.gamma <= 1.0, "gamma", self.gamma, "a number in [0, 1]")
        _check(_is_real(self.lambda_) and 0.0 <= self.lambda_ <= 1.0, "lambda_", self.lambda_,
               "a number in [0, 1]")
        _check(_is_real(self.entropy_weight) and self.entropy_weight >= 0.0, "entropy_weight",
               self.entropy_weight, "a finite number >= 0")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (``channels`` as a list)."""
        d = dataclasses.asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ActorCriticConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing ones take defaults."""
        if not isinstance(data, dict):
            raise TypeError(f"ActorCriticConfig.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"ActorCriticConfig has no field(s) {unknown}; known: {sorted(known)}")
        kwargs = dict(data)
        if isinstance(kwargs.get("channels"), list):
            kwargs["channels"] = tuple(kwargs["channels"])
        return cls(**kwargs)


# ---------------------------------------------------------------------------------------------- network


def _group_norm(channels: int) -> nn.GroupNorm:
    # groups of 32 channels where possible; gcd keeps it a divisor for odd widths (tiny test configs).
    return nn.GroupNorm(math.gcd(channels, max(1, channels // _GROUP_SIZE)), channels)


class _ResBlock(nn.Module):
    """Pre-activation residual block: ``skip(x) + conv3x3(silu(norm(x)))``.

    One 3x3 convolution keeps the encoder small (it runs at every imagined step); a 1x1 projection on the
    skip path handles a change of width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = _group_norm(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv(F.silu(self.norm(x)))


class ActorCritic(nn.Module):
    """Recurrent actor-critic on single 64x64 frames (memory is the LSTM's, not a frame stack).

    Encoder: 3x3 conv (3 -> channels[0]), then for each level a residual block and 2x2 max pooling
    (64 -> 32 -> 16 -> 8 -> 4), flattened to ``channels[-1] * 16`` features; an ``LSTMCell`` of ``lstm_dim``
    units; a linear policy head (logits) and a linear value head. Both heads start at zero (weights and
    bias), so a fresh agent is uniformly random and predicts a value of 0.
    """

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        if not isinstance(config, ActorCriticConfig):
            raise TypeError(f"ActorCritic expects an ActorCriticConfig, got {type(config).__name__}")
        self.config = config
        ch = config.channels
        layers: list[nn.Module] = [nn.Conv2d(FRAME_SHAPE[0], ch[0], 3, padding=1)]
        for c_in, c_out in zip((ch[0],) + ch[:-1], ch, strict=True):
            layers += [_ResBlock(c_in, c_out), nn.MaxPool2d(2)]
        layers.append(nn.Flatten())
        self.encoder = nn.Sequential(*layers)
        spatial = FRAME_SHAPE[1] >> _NUM_LEVELS
        self.lstm = nn.LSTMCell(ch[-1] * spatial * spatial, config.lstm_dim)
        init_lstm(self.lstm)  # DIAMOND's (forget-gate bias 1, orthogonal recurrent weights)
        self.policy_head = nn.Linear(config.lstm_dim, config.num_actions)
        self.value_head = nn.Linear(config.lstm_dim, 1)
        for head in (self.policy_head, self.value_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # -- state

    def initial_state(self, n: int, device: torch.device | str | None = None) -> LSTMState:
        """Zero LSTM state ``(h, c)``, each ``(n, lstm_dim)``, on ``device`` (default: the model's)."""
        if not _is_int(n) or n < 0:
            raise ValueError(f"initial_state: n={n!r} is invalid: expected an integer >= 0")
        param = next(self.parameters())
        device = param.device if device is None else torch.device(device)
        h = torch.zeros(n, self.config.lstm_dim, device=device, dtype=param.dtype)
        return h, torch.zeros_like(h)

    def _check_state(self, state: LSTMState, n: int) -> None:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"state must be a tuple (h, c), got {type(state).__name__}")
        expected = (n, self.config.lstm_dim)
        for name, s in zip(("h", "c"), state, strict=True):
            if not isinstance(s, Tensor) or tuple(s.shape) != expected:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(f"state {name} has shape {got}: expected {expected}")

    @staticmethod
    def _check_frames(frames: Tensor, leading: str) -> None:
        ndim = len(leading) + 3
        if not isinstance(frames, Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if not frames.is_floating_point():
            raise TypeError(f"frames must be float in [-1, 1], got dtype {frames.dtype}")
        if frames.ndim != ndim or tuple(frames.shape[-3:]) != FRAME_SHAPE:
            raise ValueError(f"frames have shape {tuple(frames.shape)}: expected ({', '.join(leading)}, "
                             f"{', '.join(map(str, FRAME_SHAPE))})")

    # -- computation

    def encode(self, frames: Tensor) -> Tensor:
        """Convolutional features. ``frames: (n, 3, 64, 64)`` -> ``(n, channels[-1] * 16)``."""
        self._check_frames(frames, "n")
        return self.encoder(frames)

    def _heads(self, features: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        h, c = self.lstm(features, state)
        return self.policy_head(h), self.value_head(h).squeeze(-1), (h, c)

    def forward(self, frames: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        """One step. ``frames: (n, 3, 64, 64)``, ``state: (h, c)`` each ``(n, lstm_dim)``.

        Returns ``logits: (n, num_actions)``, ``value: (n,)`` and the new state.
        """
        features = self.encode(frames)
        self._check_state(state, frames.shape[0])
        return self._heads(features, state)

    def burn_in(self, frames: Tensor, state: LSTMState | None = None) -> LSTMState:
        """Run the LSTM over real context frames before imagination starts from them.

        ``frames: (n, t, 3, 64, 64)``, oldest first; ``state`` defaults to :meth:`initial_state`. The
        encoder runs once on all ``n * t`` frames, the LSTM cell ``t`` times. Returns the state after the
        last frame; the caller then acts from that last frame with :meth:`forward` or :meth:`act` (which
        feed it again, as the first imagined step). Wrap in ``torch.no_grad()`` when no gradient is
        wanted through the context, as DIAMOND does.
        """
        self._check_frames(frames, "nt")
        n, t = frames.shape[:2]
        state = self.initial_state(n, frames.device) if state is None else state
        self._check_state(state, n)
        if t == 0:
            return state
        features = self.encoder(frames.flatten(0, 1)).unflatten(0, (n, t))
        h, c = state
        for i in range(t):
            h, c = self.lstm(features[:, i], (h, c))
        return h, c

    @torch.no_grad()
    def act(self, frames: Tensor, state: LSTMState, *, generator: torch.Generator | None = None,
            greedy: bool = False) -> tuple[Tensor, LSTMState]:
        """Choose actions (no gradient): sample from the policy, or take its argmax with ``greedy=True``.

        ``frames: (n, 3, 64, 64)``; returns ``actions: (n,)`` int64 on the frames' device and the new
        state. ``generator`` (on the same device) makes sampling reproducible.
        """
        logits, _, state = self(frames, state)
        if greedy:
            return logits.argmax(-1), state
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1), state


# ----------------------------------------------------------------------------------------------- losses


def _as_float(x: Tensor, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != shape:
        raise ValueError(f"{name} has shape {tuple(x.shape)}: expected {shape}")
    return x.to(dtype=like.dtype, device=like.device)


def lambda_returns(rewards: Tensor, values: Tensor, terminated: Tensor, truncated: Tensor,
                   bootstrap_value: Tensor, gamma: float, lambda_: float, *,
                   final_values: Tensor | None = None) -> Tensor:
    """TD(lambda) returns of an imagined rollout in which ended environments reset in the same step.

    Step ``t`` of row ``i``: the agent sees observation ``o_t`` (value ``values[i, t]``), acts, receives
    ``rewards[i, t]`` and the flags ``terminated[i, t]`` / ``truncated[i, t]``; the next observation
    ``o_{t+1}`` is ``values[i, t+1]``'s, or ``bootstrap_value[i]``'s after the last step. When step ``t``
    ended the episode, ``o_{t+1}`` is already the first observation of a *new* episode, so its value must
    not flow back across the boundary; a truncated episode (time limit, not a true end) instead
    bootstraps from the value of its own final, pre-reset observation, ``final_values[i, t]``.

    Args:
        rewards: ``(n, H)``, used as given. DIAMOND clips rewards to their sign; :func:`rollout_loss`
            does that before calling this function, direct callers clip themselves.
        values: ``(n, H)``, ``V(o_t)``, the critic's value of the observation step ``t`` acted from.
        terminated: ``(n, H)`` bool or 0/1, the episode truly ended at step ``t``.
        truncated: ``(n, H)`` bool or 0/1, the episode was cut at step ``t`` (ignored where terminated).
        bootstrap_value: ``(n,)``, the value of the observation after the last step, ``V(o_H)``.
        gamma, lambda_: discount and TD(lambda) mixing, both in [0, 1].
        final_values: ``(n, H)``, read only where ``truncated & ~terminated``: the value of the final
            observation of the episode cut at step ``t``, computed by the caller with that episode's LSTM
            state (before resetting it). Required when any step is truncated; other entries are ignored.

    Returns:
        ``(n, H)`` returns ``G``, computed backwards from ``t = H - 1``:

        - ``G_t = r_t + gamma * ((1 - lambda_) * V_{t+1} + lambda_ * G_{t+1})`` if step ``t`` did not end
          the episode, with ``V_H = G_H = bootstrap_value``;
        - ``G_t = r_t`` if it terminated (no bootstrap past a true end);
        - ``G_t = r_t + gamma * final_values[:, t]`` if it was truncated (full bootstrap; the recursion
          does not reach into the next episode). This includes a truncation at the last step, where
          ``bootstrap_value`` belongs to the new episode and is ignored.

        ``lambda_ = 0`` gives one-step TD targets, ``lambda_ = 1`` discounted Monte-Carlo returns
        bootstrapped at the horizon and at truncations. Gradients flow through the inputs as given; the
        losses detach the returns.
    """
    if not isinstance(rewards, Tensor) or rewards.ndim != 2:
        got = tuple(rewards.shape) if isinstance(rewards, Tensor) else type(rewards).__name__
        raise ValueError(f"rewards has shape {got}: expected (n, H)")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    n, horizon = rewards.shape
    values = _as_float(values, "values", (n, horizon), rewards)
    term = _as_float(terminated, "terminated", (n, horizon), rewards)
    trunc = _as_float(truncated, "truncated", (n, horizon), rewards) * (1.0 - term)
    bootstrap = _as_float(bootstrap_value, "bootstrap_value", (n,), rewards)
    for name, x in (("gamma", gamma), ("lambda_", lambda_)):
        if not (_is_real(x) and 0.0 <= x <= 1.0):
            raise ValueError(f"lambda_returns: {name}={x!r} is invalid: expected a number in [0, 1]")
    if final_values is None:
        if bool(trunc.any()):
            raise ValueError("lambda_returns: truncated has steps set but final_values is None: expected "
                             "(n, H) values of the truncated episodes' final observations")
        final = torch.zeros_like(rewards)
    else:
        final = _as_float(final_values, "final_values", (n, horizon), rewards)

    not_term = 1.0 - term
    cont = not_term - trunc  # 1 where the episode goes on into o_{t+1}
    returns = []
    next_value, next_return = bootstrap, bootstrap
    for t in reversed(range(horizon)):
        ahead = (1.0 - lambda_) * next_value + lambda_ * next_return
        g = rewards[:, t] + gamma * (cont[:, t] * ahead + trunc[:, t] * final[:, t])
        returns.append(g)
        next_value, next_return = values[:, t], g
    return torch.stack(returns[::-1], dim=1)


@dataclass
class ActorCriticLosses:
    """The actor-critic's loss terms (scalar tensors). ``total`` is what to backpropagate."""

    total: Tensor
    policy: Tensor  # -(log pi(a|s) * advantage).mean()
    value: Tensor  # mean (V - G)^2
    entropy: Tensor  # -entropy_weight * mean entropy (a bonus, so a loss <= 0)
    policy_entropy: Tensor  # mean entropy in nats, detached (for logging)
    advantage: Tensor  # mean advantage G - V, detached (for logging)

    def scalars(self) -> dict[str, float]:
        """Python floats for logging (syncs with the device)."""
        return {f.name: float(getattr(self, f.name).detach()) for f in dataclasses.fields(self)}


def _masked_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def actor_critic_loss(logits: Tensor, values: Tensor, actions: Tensor, lambda_returns: Tensor,
                      mask: Tensor | None = None, entropy_weight: float = 0.001) -> ActorCriticLosses:
    """REINFORCE with a value baseline on lambda-returns, plus value regression and an entropy bonus.

    Args:
        logits: ``(n, H, k)`` policy logits at each step (with gradient).
        values: ``(n, H)`` critic values at each step (with gradient).
        actions: ``(n, H)`` the actions taken, integers in ``[0, k)``.
        lambda_returns: ``(n, H)`` targets ``G`` (see :func:`lambda_returns`); detached here.
        mask: optional ``(n, H)`` bool or 0/1; steps at 0 do not count (e.g. padding, or steps after a
            termination in a rollout that does not reset). Means are over the counted steps.
        entropy_weight: weight of the entropy bonus (DIAMOND: 0.001).

    The advantage ``A = (G - V).detach()``; ``policy = -(log pi(a) * A).mean()``,
    ``value = ((V - G.detach())^2).mean()``, ``entropy = -entropy_weight * H(pi).mean()``, and
    ``total = policy + value + entropy``.
    """
    if not isinstance(logits, Tensor) or logits.ndim != 3:
        got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits has shape {got}: expected (n, H, k)")
    n, horizon, k = logits.shape
    if not isinstance(values, Tensor) or tuple(values.shape) != (n, horizon):
        raise ValueError(f"values has shape {tuple(getattr(values, 'shape', ()))}: expected {(n, horizon)}")
    if not isinstance(actions, Tensor) or tuple(actions.shape) != (n, horizon):
        raise ValueError(f"actions has shape {tuple(getattr(actions, 'shape', ()))}: expected {(n, horizon)}")
    if actions.is_floating_point() or actions.dtype == torch.bool:
        raise TypeError(f"actions must be integers, got dtype {actions.dtype}")
    targets = _as_float(lambda_returns, "lambda_returns", (n, horizon), values).detach()
    if not (_is_real(entropy_weight) and entropy_weight >= 0):
        raise ValueError(f"entropy_weight={entropy_weight!r} is invalid: expected a finite number >= 0")
    m = None if mask is None else _as_float(mask, "mask", (n, horizon), values)

    log_probs = torch.log_softmax(logits.float(), dim=-1)
    log_prob_taken = log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    advantage = (targets - values).detach()

    loss_policy = -_masked_mean(log_prob_taken * advantage, m)
    loss_value = _masked_mean((values - targets) ** 2, m)
    mean_entropy = _masked_mean(entropy, m)
    loss_entropy = -entropy_weight * mean_entropy
    return ActorCriticLosses(
        total=loss_policy + loss_value + loss_entropy,
        policy=loss_policy,
        value=loss_value,
        entropy=loss_entropy,
        policy_entropy=mean_entropy.detach(),
        advantage=_masked_mean(advantage, m).detach(),
    )


def rollout_loss(logits: Tensor, values: Tensor, actions: Tensor, rewards: Tensor, terminated: Tensor,
                 truncated: Tensor, bootstrap_value: Tensor, config: ActorCriticConfig, *,
                 final_values: Tensor | None = None, mask: Tensor | None = None) -> ActorCriticLosses:
    """The whole DIAMOND loss of one imagined rollout: sign-clip rewards, lambda-returns, loss.

    Shapes and meanings as in :func:`lambda_returns` and :func:`actor_critic_loss` (``logits: (n, H, k)``,
    the rest ``(n, H)``, ``bootstrap_value: (n,)``). Rewards are clipped to their sign here; the returns
    are computed without gradient from the detached values; ``gamma``, ``lambda_`` and
    ``entropy_weight`` come from ``config``.
    """
    if not isinstance(rewards, Tensor):
        raise TypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    with torch.no_grad():
        returns = lambda_returns(
            rewards.float().sign(), values.detach(), terminated, truncated, bootstrap_value.detach(),
            config.gamma, config.lambda_,
            final_values=None if final_values is None else final_values.detach(),
        )
    return actor_critic_loss(logits, values, actions, returns, mask=mask,
                             entropy_weight=config.entropy_weight)
