"""DIAMOND's actor-critic losses: lambda-returns, REINFORCE with a value baseline, an entropy bonus.

As DIAMOND's ``src/models/actor_critic.py`` computes them: REINFORCE with a value baseline on
lambda-returns, an MSE value loss towards the same returns and a small entropy bonus. The network is
``gym_diamond.nn.actor_critic``; rolling it out in the dream is ``training.agents.imagination``'s job.

Tensors: time-major sequences are batch-first, ``(n, H, ...)``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gym_diamond.config import ActorCriticConfig
from gym_diamond.errors import UserError

__all__ = ["ActorCriticLosses", "actor_critic_loss", "lambda_returns", "rollout_loss"]


def _is_real(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _as_float(x: Tensor, name: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != shape:
        raise UserError(f"{name} has shape {tuple(x.shape)}: expected {shape}")
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
        raise UserError(f"rewards has shape {got}: expected (n, H)")
    if not rewards.is_floating_point():
        rewards = rewards.float()
    n, horizon = rewards.shape
    values = _as_float(values, "values", (n, horizon), rewards)
    term = _as_float(terminated, "terminated", (n, horizon), rewards)
    trunc = _as_float(truncated, "truncated", (n, horizon), rewards) * (1.0 - term)
    bootstrap = _as_float(bootstrap_value, "bootstrap_value", (n,), rewards)
    for name, x in (("gamma", gamma), ("lambda_", lambda_)):
        if not (_is_real(x) and 0.0 <= x <= 1.0):
            raise UserError(f"lambda_returns: {name}={x!r} is invalid: expected a number in [0, 1]")
    if final_values is None:
        if bool(trunc.any()):
            raise UserError("lambda_returns: truncated has steps set but final_values is None: expected "
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
        raise UserError(f"logits has shape {got}: expected (n, H, k)")
    n, horizon, k = logits.shape
    if not isinstance(values, Tensor) or tuple(values.shape) != (n, horizon):
        raise UserError(f"values has shape {tuple(getattr(values, 'shape', ()))}: expected {(n, horizon)}")
    if not isinstance(actions, Tensor) or tuple(actions.shape) != (n, horizon):
        raise UserError(f"actions has shape {tuple(getattr(actions, 'shape', ()))}: expected {(n, horizon)}")
    if actions.is_floating_point() or actions.dtype == torch.bool:
        raise TypeError(f"actions must be integers, got dtype {actions.dtype}")
    targets = _as_float(lambda_returns, "lambda_returns", (n, horizon), values).detach()
    if not (_is_real(entropy_weight) and entropy_weight >= 0):
        raise UserError(f"entropy_weight={entropy_weight!r} is invalid: expected a finite number >= 0")
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
