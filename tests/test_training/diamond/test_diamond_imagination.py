"""Our imagination loop computes DIAMOND's actor-critic loss and gradients, update after update.

``tests/data/diamond/imagination.safetensors`` (made by ``make_imagination_fixture.py`` beside it, with
DIAMOND's unmodified code): DIAMOND's ``ActorCritic`` run through its ``make_env_loop`` for two
consecutive ``send(15)`` calls on a scripted dream with terminations and truncations. Here the same
weights (mapped by ``training.diamond.format``), the same scripted dream and the same actions go through
our ``EnvLoop`` and ``imagination_loss``: the rollouts, lambda-returns, loss terms and every parameter's
gradient must agree, so dreams that go on across updates, value bootstraps on final observations and
the LSTM burn-in with gradient after an episode ends are all DIAMOND's.
"""


import pytest
import torch
from helpers import DATA
from safetensors.torch import load_file

from gym_diamond import WorldModel, tiny_world_model_config
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.imagination import EnvLoop, imagination_loss
from training.agents.losses import lambda_returns
from training.diamond.format import diamond_keys

FIXTURE = DATA / "diamond" / "imagination.safetensors"
CHUNK, CALLS = 15, 2
# Largest differences from DIAMOND's fixture (made on an AVX-512 CPU), measured with this machine's default
# kernels (AVX-512), with ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 and with
# ATEN_CPU_CAPABILITY=default (torch 2.13, one thread): 8.3e-7 on logits, values, lambda-returns and loss
# terms (AVX2), 3.7e-6 on gradients relative to each parameter's largest gradient (AVX2). The
# tolerances are about 10x those.
LOSS_TOL = 1e-5
GRAD_TOL = 4e-5


def to_frames(u8: torch.Tensor) -> torch.Tensor:
    return u8.float().div(127.5).sub(1)


class ScriptedDream:
    """The fixture's scripted dream, with DIAMOND's ``WorldModelEnv`` interface (as our ``WorldModelEnv``)."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data, self.t, self.num_envs = data, 0, data["env_obs0"].shape[0]
        self.contexts = iter(to_frames(data["env_new_contexts"]))

    def reset(self) -> tuple[torch.Tensor, dict]:
        return to_frames(self.data["env_obs0"]), {}

    def step(self, actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
        d, t = self.data, self.t
        next_obs = to_frames(d["env_next_obs"][t])
        terminated, truncated = d["env_end"][t].bool(), d["env_trunc"][t].bool()
        dead = terminated | truncated
        obs, info = next_obs.clone(), {}
        if dead.any():
            contexts = torch.stack([next(self.contexts) for _ in range(int(dead.sum()))])
            obs[dead] = contexts[:, -1]
            info = {"final_observation": next_obs[dead], "burnin_obs": contexts[:, :-1]}
        self.t += 1
        return obs, d["env_rew"][t], terminated, truncated, info


def actor_critic_from_fixture(data: dict[str, torch.Tensor]) -> tuple[ActorCritic, dict[str, str]]:
    """Our actor-critic holding DIAMOND's weights, and our parameter name -> the fixture's key."""
    num_actions = data["actor_critic.actor_linear.weight"].shape[0]
    actor_critic = ActorCritic(ActorCriticConfig(num_actions, channels=(8, 8, 16, 16), lstm_dim=32))
    mapping = {ours.removeprefix("actor_critic."): theirs for ours, theirs in
               diamond_keys(WorldModel(tiny_world_model_config(num_actions)), actor_critic).items()
               if ours.startswith("actor_critic.")}
    actor_critic.load_state_dict({ours: data[theirs] for ours, theirs in mapping.items()})
    return actor_critic, mapping


def differences(data: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """Per call: the largest difference of each compared quantity from DIAMOND's."""
    torch.manual_seed(0)
    actor_critic, mapping = actor_critic_from_fixture(data)
    replay = iter([data[f"call{k}_actions"][:, t] for k in range(CALLS) for t in range(CHUNK)])
    loop = EnvLoop(ScriptedDream(data), actor_critic, lambda logits: next(replay))
    actor_critic.train()
    found = []
    for k in range(CALLS):
        actor_critic.zero_grad(set_to_none=True)
        rollout = loop.rollout(CHUNK)
        losses, _ = imagination_loss(rollout, actor_critic)
        losses.total.backward()
        config = actor_critic.config
        returns = lambda_returns(rollout.rewards.sign(), rollout.values.detach(), rollout.terminated,
                                 rollout.truncated, rollout.bootstrap, config.gamma, config.lambda_,
                                 final_values=rollout.final_values)
        theirs = {name: data[f"call{k}_{name}"] for name in ("rewards", "logits", "values", "lambda_returns")}
        assert torch.equal(rollout.terminated, data[f"call{k}_end"].bool())
        assert torch.equal(rollout.truncated, data[f"call{k}_trunc"].bool())
        diff = {name: (ours.detach() - theirs[name]).abs().max().item() for name, ours in
                (("rewards", rollout.rewards), ("logits", rollout.logits), ("values", rollout.values),
                 ("lambda_returns", returns))}
        for ours, name in (("total", "loss_total"), ("policy", "loss_actions"), ("value", "loss_values"),
                           ("entropy", "loss_entropy")):
            diff[name] = abs(getattr(losses, ours).item() - data[f"call{k}_{name}"].item())
        diff["gradients"] = max(
            ((p.grad - data[f"call{k}_grad.{mapping[n]}"]).abs().max() /
             data[f"call{k}_grad.{mapping[n]}"].abs().max().clamp(min=1e-12)).item()
            for n, p in actor_critic.named_parameters())
        found.append(diff)
    return found


def test_two_updates_of_our_env_loop_give_diamonds_losses_and_gradients(one_thread: None) -> None:
    data = load_file(FIXTURE)
    ended = data["call0_end"] | data["call0_trunc"], data["call1_end"] | data["call1_trunc"]
    assert ended[0][:, 1:-1].any() and ended[0][:, -1].any() and ended[1][:, 0].any() and ended[1][:, -1].any()
    for k, diff in enumerate(differences(data)):
        print(f"[diamond imagination] call {k + 1}: " + ", ".join(f"{n} {v:.2g}" for n, v in diff.items()))
        assert diff["rewards"] == 0
        for name, value in diff.items():
            assert value <= (GRAD_TOL if name == "gradients" else LOSS_TOL), (k, name, value)


def test_a_wrong_loop_is_caught(one_thread: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The comparison is sharp: burning the new context in without gradient (the loop's old way) fails it."""
    burn_in = ActorCritic.burn_in

    def without_gradient(self, frames, state=None):
        with torch.no_grad():
            return burn_in(self, frames, state)

    monkeypatch.setattr(ActorCritic, "burn_in", without_gradient)
    worst = max(d["gradients"] for d in differences(load_file(FIXTURE)))
    print(f"[diamond imagination] burn-in without gradient: gradients off by {worst:.2g}")
    assert worst > 100 * GRAD_TOL
