"""DIAMOND's actor-critic (gym_diamond.nn.actor_critic) and its losses (training.agents.losses): lambda-returns by
hand, loss gradients, the network, a bandit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.losses import actor_critic_loss, lambda_returns, rollout_loss

TINY = dict(channels=(4, 4, 8, 8), lstm_dim=16)


def tiny_model(num_actions: int = 3, seed: int = 0) -> ActorCritic:
    torch.manual_seed(seed)
    return ActorCritic(ActorCriticConfig(num_actions=num_actions, **TINY))


def frames(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, 3, 64, 64, generator=g) * 2 - 1


# ------------------------------------------------------------------------------------------ lambda-returns


def test_lambda_returns_by_hand_with_termination_and_truncation() -> None:
    gamma, lam = 0.9, 0.5
    X = 99.0  # entries that must be ignored
    rewards = torch.tensor([[1.0, 0.0, 2.0, -1.0, 0.5],
                            [0.0, 0.0, 1.0, 0.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5],
                           [1.0, 1.0, 1.0, 1.0, 1.0]])
    # row 0: terminates at t=1, truncated at t=3. row 1: terminated and truncated at t=2 (termination
    # wins), truncated at the last step t=4 (its final value, not the bootstrap, is used).
    terminated = torch.tensor([[0, 1, 0, 0, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    truncated = torch.tensor([[0, 0, 0, 1, 0], [0, 0, 1, 0, 1]], dtype=torch.bool)
    final_values = torch.tensor([[X, X, X, 3.0, X], [X, X, X, X, -1.0]])
    bootstrap = torch.tensor([2.0, X])

    g = lambda_returns(rewards, values, terminated, truncated, bootstrap, gamma, lam,
                       final_values=final_values)

    # row 0, backwards
    g04 = 0.5 + 0.9 * (0.5 * 2.0 + 0.5 * 2.0)  # last step: V_5 = G_5 = bootstrap = 2.3
    g03 = -1.0 + 0.9 * 3.0  # truncated: full bootstrap from the final observation = 1.7
    g02 = 2.0 + 0.9 * (0.5 * 0.4 + 0.5 * g03)  # = 2.945
    g01 = 0.0  # terminated: reward only
    g00 = 1.0 + 0.9 * (0.5 * 0.2 + 0.5 * g01)  # = 1.09
    # row 1, backwards
    g14 = 0.0 + 0.9 * -1.0  # truncated at the last step = -0.9
    g13 = 0.0 + 0.9 * (0.5 * 1.0 + 0.5 * g14)  # = 0.045
    g12 = 1.0  # terminated (and truncated): no bootstrap
    g11 = 0.0 + 0.9 * (0.5 * 1.0 + 0.5 * g12)  # = 0.9
    g10 = 0.0 + 0.9 * (0.5 * 1.0 + 0.5 * g11)  # = 0.855
    expected = torch.tensor([[g00, g01, g02, g03, g04], [g10, g11, g12, g13, g14]])
    torch.testing.assert_close(g, expected)
    torch.testing.assert_close(g[0], torch.tensor([1.09, 0.0, 2.945, 1.7, 2.3]))
    torch.testing.assert_close(g[1], torch.tensor([0.855, 0.9, 1.0, 0.045, -0.9]))


def test_lambda_returns_limits() -> None:
    gamma = 0.9
    r = torch.tensor([[1.0, 2.0, 3.0]])
    v = torch.tensor([[10.0, 20.0, 30.0]])
    no = torch.zeros(1, 3, dtype=torch.bool)
    boot = torch.tensor([40.0])
    # lambda = 0: one-step TD targets r_t + gamma * V_{t+1}
    td0 = lambda_returns(r, v, no, no, boot, gamma, 0.0)
    torch.testing.assert_close(td0, torch.tensor([[1 + 0.9 * 20, 2 + 0.9 * 30, 3 + 0.9 * 40]]))
    # lambda = 1: discounted sum bootstrapped at the horizon
    mc = lambda_returns(r, v, no, no, boot, gamma, 1.0)
    g2 = 3 + 0.9 * 40
    g1 = 2 + 0.9 * g2
    torch.testing.assert_close(mc, torch.tensor([[1 + 0.9 * g1, g1, g2]]))


def test_lambda_returns_validates() -> None:
    r = torch.zeros(2, 3)
    no = torch.zeros(2, 3, dtype=torch.bool)
    trunc = no.clone()
    trunc[1, 0] = True
    with pytest.raises(ValueError, match="final_values"):
        lambda_returns(r, r, no, trunc, torch.zeros(2), 0.9, 0.9)
    with pytest.raises(ValueError, match="bootstrap_value"):
        lambda_returns(r, r, no, no, torch.zeros(3), 0.9, 0.9)
    with pytest.raises(ValueError, match="gamma"):
        lambda_returns(r, r, no, no, torch.zeros(2), 1.5, 0.9)


# ------------------------------------------------------------------------------------------------- losses


def _one_step_loss(model: ActorCritic, obs: torch.Tensor, action: int, target: float):
    logits, value, _ = model(obs, model.initial_state(obs.shape[0]))
    n = obs.shape[0]
    actions = torch.full((n, 1), action)
    returns = torch.full((n, 1), target)
    return logits, value, actor_critic_loss(logits[:, None], value[:, None], actions, returns,
                                            entropy_weight=0.0)


@pytest.mark.parametrize("target", [1.0, -1.0])
def test_policy_gradient_sign(target: float) -> None:
    model = tiny_model()
    obs = frames(4)
    logits, _, loss = _one_step_loss(model, obs, action=2, target=target)  # V = 0 at init: A = target
    before = torch.log_softmax(logits, -1)[:, 2].detach()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    opt.zero_grad()
    loss.policy.backward()
    opt.step()
    with torch.no_grad():
        after = torch.log_softmax(model(obs, model.initial_state(4))[0], -1)[:, 2]
    assert torch.all((after - before) * target > 0)


def test_value_loss_pulls_value_toward_return() -> None:
    model = tiny_model()
    obs = frames(4)
    _, value, loss = _one_step_loss(model, obs, action=0, target=2.0)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    opt.zero_grad()
    loss.value.backward()
    opt.step()
    with torch.no_grad():
        new_value = model(obs, model.initial_state(4))[1]
    assert torch.all(new_value > value.detach())
    assert torch.all((new_value - 2.0).abs() < (value.detach() - 2.0).abs())


def test_loss_terms_and_mask() -> None:
    logits = torch.zeros(2, 3, 4, requires_grad=True)
    values = torch.zeros(2, 3, requires_grad=True)
    actions = torch.zeros(2, 3, dtype=torch.long)
    returns = torch.ones(2, 3)
    mask = torch.ones(2, 3)
    loss = actor_critic_loss(logits, values, actions, returns, mask=mask, entropy_weight=0.001)
    log4 = torch.log(torch.tensor(4.0))
    torch.testing.assert_close(loss.policy, log4)  # -(log(1/4) * 1)
    torch.testing.assert_close(loss.value, torch.tensor(1.0))
    torch.testing.assert_close(loss.entropy, -0.001 * log4)
    torch.testing.assert_close(loss.total, loss.policy + loss.value + loss.entropy)
    # masked-out steps do not count, whatever their targets
    wild = returns.clone()
    wild[1, 2] = 1e6
    mask[1, 2] = 0
    masked = actor_critic_loss(logits, values, actions, wild, mask=mask)
    torch.testing.assert_close(masked.value, torch.tensor(1.0))
    assert set(masked.scalars()) == {"total", "policy", "value", "entropy", "policy_entropy", "advantage"}


def test_rollout_loss_clips_rewards_to_sign() -> None:
    cfg = ActorCriticConfig(num_actions=3, **TINY)
    logits, values = torch.zeros(2, 4, 3), torch.zeros(2, 4)
    actions = torch.zeros(2, 4, dtype=torch.long)
    no = torch.zeros(2, 4, dtype=torch.bool)
    big = rollout_loss(logits, values, actions, torch.full((2, 4), 7.0), no, no, torch.zeros(2), cfg)
    one = rollout_loss(logits, values, actions, torch.ones(2, 4), no, no, torch.zeros(2), cfg)
    torch.testing.assert_close(big.total, one.total)


# ------------------------------------------------------------------------------------------------ network


def test_zero_initialised_heads_give_uniform_policy_and_zero_value() -> None:
    model = tiny_model(num_actions=5)
    logits, value, (h, c) = model(frames(3), model.initial_state(3))
    assert logits.shape == (3, 5) and value.shape == (3,) and h.shape == c.shape == (3, 16)
    torch.testing.assert_close(torch.softmax(logits, -1), torch.full((3, 5), 0.2))
    torch.testing.assert_close(value, torch.zeros(3))


def test_default_config_shapes_and_size() -> None:
    model = ActorCritic(ActorCriticConfig(num_actions=6))
    assert sum(p.numel() for p in model.parameters()) == 3_230_663
    assert model.encode(frames(1)).shape == (1, 64 * 4 * 4)


def test_burn_in_changes_state_and_is_deterministic() -> None:
    model = tiny_model()
    context = frames(2, 4)
    s1 = model.burn_in(context)
    s2 = model.burn_in(context)
    zero = model.initial_state(2)
    assert not torch.equal(s1[0], zero[0]) and not torch.equal(s1[1], zero[1])
    assert torch.equal(s1[0], s2[0]) and torch.equal(s1[1], s2[1])
    # the same as stepping forward frame by frame
    state = zero
    for t in range(4):
        _, _, state = model(context[:, t], state)
    torch.testing.assert_close(s1, state)


def test_act() -> None:
    model = tiny_model(num_actions=4)
    obs = frames(64)
    state = model.initial_state(64)
    a1, s1 = model.act(obs, state, generator=torch.Generator().manual_seed(1))
    a2, _ = model.act(obs, state, generator=torch.Generator().manual_seed(1))
    assert a1.dtype == torch.long and a1.shape == (64,) and torch.equal(a1, a2)
    assert len(set(a1.tolist())) > 1  # uniform at init
    assert s1[0].shape == (64, 16) and not s1[0].requires_grad
    with torch.no_grad():
        model.policy_head.bias[3] = 5.0
    greedy, _ = model.act(obs, state, greedy=True)
    assert torch.all(greedy == 3)


def test_input_validation() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"\(n, 3, 64, 64\)"):
        model(torch.zeros(2, 3, 32, 32), model.initial_state(2))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), model.initial_state(2))
    with pytest.raises(ValueError, match="state h"):
        model(frames(2), model.initial_state(3))


def test_bandit_learns_the_paying_action(one_thread: None) -> None:
    """One-step bandit: action 1 pays +1, the others 0; the policy must learn to prefer it."""
    model = tiny_model(num_actions=3)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    n = 16
    for _ in range(100):
        obs = torch.rand(n, 3, 64, 64, generator=gen) * 2 - 1
        logits, value, _ = model(obs, model.initial_state(n))
        actions = torch.multinomial(torch.softmax(logits.detach(), -1), 1, generator=gen)  # (n, 1)
        rewards = (actions == 1).float()
        ended = torch.ones(n, 1, dtype=torch.bool)
        returns = lambda_returns(rewards, value.detach()[:, None], ended, ~ended, torch.zeros(n),
                                 0.985, 0.95)
        loss = actor_critic_loss(logits[:, None], value[:, None], actions, returns, entropy_weight=0.001)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    with torch.no_grad():
        probs = torch.softmax(model(frames(64, seed=7), model.initial_state(64))[0], -1)
    assert probs[:, 1].mean() > 0.9


# ------------------------------------------------------------------------------------------------- config


def test_config_round_trip() -> None:
    cfg = ActorCriticConfig(num_actions=6, **TINY, gamma=0.99)
    back = ActorCriticConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and back.channels == (4, 4, 8, 8)
    assert ActorCriticConfig(num_actions=6) == ActorCriticConfig.from_dict({"num_actions": 6})
    with pytest.raises(ValueError, match="bogus"):
        ActorCriticConfig.from_dict({"num_actions": 6, "bogus": 1})


@pytest.mark.parametrize("field, value", [
    ("num_actions", 0), ("num_actions", 2.5), ("channels", (4, 4, 8)), ("channels", (4, 0, 8, 8)),
    ("lstm_dim", 0), ("gamma", 1.5), ("lambda_", -0.1), ("entropy_weight", -1.0),
    ("entropy_weight", float("nan")),
])
def test_config_validation_names_the_field(field: str, value: object) -> None:
    kwargs = {"num_actions": 6, field: value}
    with pytest.raises(ValueError, match=f"ActorCriticConfig.{field}="):
        ActorCriticConfig(**kwargs)


def test_an_actor_critic_update_is_diamonds_adamw_step(monkeypatch, tmp_path):
    """DIAMOND's actor-critic optimiser: AdamW without weight decay, gradients clipped to a global norm of 100
    (its ``config/trainer.yaml``). Two updates of a loss whose gradient is c * w for a unit direction w, c = 1000
    (clipped to 100) then 50 (not clipped), must move the weights as that optimiser does: another weight decay
    adds a pull towards 0, another clip changes the ratio of the two gradients and so the second Adam step."""
    from gym_diamond import WorldModel, tiny_world_model_config
    from training.agents.imagination import ImaginationConfig, ImaginationTrainer
    from training.data.dataset import Episode, EpisodeDataset

    dataset = EpisodeDataset(tmp_path / "data", game="Pong")
    rng = np.random.default_rng(0)
    z = np.zeros(12, dtype=bool)
    dataset.append(Episode(rng.integers(0, 256, (13, 64, 64, 3), dtype=np.uint8), rng.integers(0, 3, 12),
                           np.zeros(12, np.float32), z, z.copy(), z.copy()))
    torch.manual_seed(0)
    model = tiny_model()
    trainer = ImaginationTrainer(WorldModel(tiny_world_model_config(num_actions=3)), model, dataset,
                                 ImaginationConfig(horizon=2, backup_every=2, batch_size=2, num_batches_to_preload=1,
                                                   warmup_steps=0), seed=0)
    params = list(model.parameters())
    direction = [torch.randn_like(p) for p in params]
    norm = torch.sqrt(sum((d ** 2).sum() for d in direction))
    direction = [d / norm for d in direction]
    scales = iter([1000.0, 50.0])
    monkeypatch.setattr(trainer, "_objective", lambda: (next(scales) * sum((p * d).sum() for p, d in
                                                                           zip(params, direction, strict=True)), {}))
    reference = [p.detach().clone().requires_grad_(True) for p in params]
    optimizer = torch.optim.AdamW(reference, lr=1e-4, eps=1e-8, weight_decay=0.0)  # DIAMOND's
    for scale in (1000.0, 50.0):
        for r, d in zip(reference, direction, strict=True):
            r.grad = scale * d
        torch.nn.utils.clip_grad_norm_(reference, 100.0)
        optimizer.step()
        scalars = trainer.step()
        assert scalars["ac_grad_norm"] == pytest.approx(scale, rel=1e-4)  # reported before clipping
    for p, r in zip(params, reference, strict=True):
        torch.testing.assert_close(p.detach(), r.detach(), rtol=0, atol=1e-7)  # a rounding apart
