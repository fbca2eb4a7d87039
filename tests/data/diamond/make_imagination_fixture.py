"""Record DIAMOND's actor-critic training in imagination on a scripted dream: the oracle of
tests/test_diamond_imagination.py.

    python tests/data/diamond/make_imagination_fixture.py --diamond-src /tmp/diamond/src \
        --out tests/data/diamond/imagination.safetensors

DIAMOND's own ``ActorCritic`` (``src/models/actor_critic.py``, a small config, every weight perturbed from
its init so that no head is zero) runs its own ``make_env_loop`` (``src/coroutines/env_loop.py``) through
its ``forward`` twice, i.e. two consecutive ``send(15)`` of the same loop, as its trainer does for two
updates. The world model is replaced by ``ScriptedDream``, which has DIAMOND's ``WorldModelEnv``
interface and returns pre-drawn frames, rewards and ends: terminations in the middle of a rollout, on the
first and last step of the second call, truncations after 15 steps of an episode's own (one on the last
step of the first call), each with ``final_observation`` and ``burnin_obs`` (the new context's first
three frames) in ``info``. Recorded: the weights (DIAMOND's keys under ``actor_critic.``), the scripted
data, the actions DIAMOND sampled, the rollouts, lambda-returns, loss terms and the gradient of every
parameter after ``backward`` of each call's loss (gradients zeroed between the calls, no optimiser step).

DIAMOND's package imports wandb, omegaconf, hydra and torcheval at import time, for training helpers none
of which runs here: when one is not installed, a tiny stand-in module takes its place.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from diamond_stubs import stub_missing_modules  # a sibling module: a script's folder is on sys.path
from safetensors.torch import save_file

NUM_ENVS, CHUNK, CHUNKS, ACTIONS, CONTEXT = 3, 15, 2, 6, 4
# (step, row, kind) of every episode end over the 30 scripted steps; "end" terminates, "trunc" truncates
ENDS = [(4, 0, "end"), (9, 2, "end"), (14, 1, "trunc"),  # first call: mid-rollout ends, a cut on its last step
        (15, 1, "end"), (19, 0, "trunc"), (24, 2, "trunc"), (29, 0, "end")]  # second call: first and last step
SEED = 0


def to_frames(u8: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, 64, 64) -> float in [-1, 1], the same arithmetic as gym_diamond's ``to_model_frames``."""
    return u8.float().div(127.5).sub(1)


def script(generator: torch.Generator) -> dict[str, torch.Tensor]:
    """The scripted dream: frames (uint8), rewards, ends, and a new context for every episode end."""
    steps = CHUNK * CHUNKS
    frame = (3, 64, 64)
    data = {
        "env_obs0": torch.randint(0, 256, (NUM_ENVS, *frame), generator=generator, dtype=torch.uint8),
        "env_next_obs": torch.randint(0, 256, (steps, NUM_ENVS, *frame), generator=generator, dtype=torch.uint8),
        "env_rew": (torch.multinomial(torch.tensor([0.15, 0.7, 0.15]), steps * NUM_ENVS, replacement=True,
                                      generator=generator) - 1).float().view(steps, NUM_ENVS),
        "env_end": torch.zeros(steps, NUM_ENVS, dtype=torch.long),
        "env_trunc": torch.zeros(steps, NUM_ENVS, dtype=torch.long),
    }
    for t, row, kind in ENDS:
        data[f"env_{kind}"][t, row] = 1
    data["env_new_contexts"] = torch.randint(0, 256, (len(ENDS), CONTEXT, *frame), generator=generator,
                                             dtype=torch.uint8)
    return data


class ScriptedDream:
    """DIAMOND's ``WorldModelEnv`` interface over pre-drawn data."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data, self.t, self.num_envs, self.num_actions = data, 0, NUM_ENVS, ACTIONS
        self.contexts = iter(to_frames(data["env_new_contexts"]))

    def reset(self, **kwargs: object) -> tuple[torch.Tensor, dict]:
        return to_frames(self.data["env_obs0"]), {}

    def step(self, act: torch.Tensor) -> tuple[torch.Tensor, ...]:
        d, t = self.data, self.t
        next_obs = to_frames(d["env_next_obs"][t])
        end, trunc = d["env_end"][t].clone(), d["env_trunc"][t].clone()
        dead = torch.logical_or(end, trunc)
        obs, info = next_obs.clone(), {}
        if dead.any():
            contexts = torch.stack([next(self.contexts) for _ in range(int(dead.sum()))])
            obs[dead] = contexts[:, -1]
            info = {"final_observation": next_obs[dead], "burnin_obs": contexts[:, :-1]}
        self.t += 1
        return obs, d["env_rew"][t].clone(), end, trunc, info


class RecordingLoop:
    """Passes ``send`` through to DIAMOND's env loop and keeps what it yielded."""

    def __init__(self, loop: object) -> None:
        self.loop, self.outputs = loop, []

    def send(self, num_steps: int) -> tuple:
        out = self.loop.send(num_steps)
        self.outputs.append(out)
        return out


def build_actor_critic(generator: torch.Generator) -> torch.nn.Module:
    from models.actor_critic import ActorCritic, ActorCriticConfig  # noqa: PLC0415  (DIAMOND's, importable now)

    config = ActorCriticConfig(lstm_dim=32, img_channels=3, img_size=64, channels=[8, 8, 16, 16], down=[1, 1, 1, 1],
                               num_actions=ACTIONS)
    model = ActorCritic(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 0.3 if name.startswith(("actor_linear", "critic_linear")) else 0.05
            p.add_(scale * torch.randn(p.shape, generator=generator))
    return model


def record(diamond_src: Path) -> dict[str, torch.Tensor]:
    """Run DIAMOND's actor-critic loss twice through its env loop; every tensor worth comparing."""
    stub_missing_modules()
    sys.path.insert(0, str(diamond_src))
    from models.actor_critic import ActorCriticLossConfig, compute_lambda_returns  # noqa: PLC0415

    torch.manual_seed(SEED)  # DIAMOND's env loop samples actions from the global stream
    generator = torch.Generator().manual_seed(SEED)
    model = build_actor_critic(generator)
    data = script(generator)
    env = ScriptedDream(data)
    loss_config = ActorCriticLossConfig(backup_every=CHUNK, gamma=0.985, lambda_=0.95, weight_value_loss=1.0,
                                        weight_entropy_loss=0.001)
    out = {**data, **{f"actor_critic.{k}": v.clone() for k, v in model.state_dict().items()}}
    model.setup_training(env, loss_config)
    model.env_loop = RecordingLoop(model.env_loop)
    model.train()
    for call in range(CHUNKS):
        model.zero_grad(set_to_none=True)
        loss, metrics = model()
        loss.backward()
        _, act, rew, end, trunc, logits_act, val, val_bootstrap, _ = model.env_loop.outputs[-1]
        returns = compute_lambda_returns(rew, end, trunc, val_bootstrap, loss_config.gamma, loss_config.lambda_)
        out.update({f"call{call}_{k}": v.detach().clone() for k, v in {
            "actions": act, "rewards": rew, "end": end, "trunc": trunc, "logits": logits_act, "values": val,
            "val_bootstrap": val_bootstrap, "lambda_returns": returns, **metrics}.items()})
        out.update({f"call{call}_grad.actor_critic.{name}": p.grad.clone() for name, p in model.named_parameters()})
    return {k: v.contiguous() for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--diamond-src", required=True, type=Path, help="the src folder of a DIAMOND checkout")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    if not (args.diamond_src / "coroutines" / "env_loop.py").exists():
        raise SystemExit(f"{args.diamond_src} is not DIAMOND's src folder (no coroutines/env_loop.py)")
    torch.set_num_threads(1)
    tensors = record(args.diamond_src.resolve())
    save_file(tensors, str(args.out), metadata={"made_by": "tests/data/diamond/make_imagination_fixture.py",
                                                "torch": torch.__version__})
    for call in range(CHUNKS):
        terms = {k: round(float(tensors[f"call{call}_{k}"]), 6)
                 for k in ("loss_total", "loss_actions", "loss_values", "loss_entropy")}
        print(f"call {call + 1}: {terms}")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes, {len(tensors)} tensors)")


if __name__ == "__main__":
    main()
