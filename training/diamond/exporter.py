"""``python -m training.diamond.exporter``: our world model and actor-critic as a DIAMOND agent file.

    python -m training.diamond.exporter --checkpoint runs/Pong/world_model.safetensors \\
        --actor-critic runs/Pong/actor_critic.safetensors --out Pong.pt

writes ``Pong.pt`` (a flat dict of tensors, the layout of DIAMOND's ``Agent.state_dict()``, which its
``Agent.load``, ``play.py`` and trainer read) and ``Pong.yaml`` beside it: the values of DIAMOND's
``config/agent/default.yaml`` that rebuild these networks in its code. Without ``--actor-critic`` the
file holds a fresh actor-critic of the paper's size (zero heads: a uniformly random policy), since
DIAMOND's agent always has one. ``training.diamond.importer`` reads the file back to the same tensors.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from gym_diamond.atomic import replace_atomic, write_atomic
from gym_diamond.checkpoint import load_checkpoint
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.checkpoints import load_actor_critic
from training.diamond.format import DiamondConfigs, diamond_yaml, to_diamond
from training.runtime.cli import user_errors


def export_diamond(world_model_path: str | Path, out: str | Path,
                   actor_critic_path: str | Path | None = None) -> tuple[Path, Path]:
    """Write the DIAMOND agent file ``out`` and its config values ``out`` with suffix ``.yaml``."""
    ckpt = load_checkpoint(world_model_path)
    if actor_critic_path is not None:
        actor_critic = load_actor_critic(actor_critic_path)
    else:
        actor_critic = ActorCritic(ActorCriticConfig(num_actions=ckpt.config.num_actions))
    state = to_diamond(ckpt.world_model, actor_critic)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(out, lambda tmp: torch.save(state, tmp))
    yaml = out.with_suffix(".yaml")
    text = diamond_yaml(DiamondConfigs(ckpt.config, actor_critic.config)).encode()
    write_atomic(yaml, lambda f: f.write(text))
    return out, yaml


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a gym-diamond world model .safetensors")
    parser.add_argument("--actor-critic", help="a gym-diamond actor-critic .safetensors (default: a fresh one)")
    parser.add_argument("--out", required=True, help="the DIAMOND agent file to write, e.g. Pong.pt")
    args = parser.parse_args(argv)
    if args.actor_critic is None:
        print("no --actor-critic: the file holds a fresh, untrained actor-critic of the paper's size")
    agent, yaml = export_diamond(args.checkpoint, args.out, args.actor_critic)
    print(f"wrote {agent} (DIAMOND agent state dict) and {yaml} (its config/agent values)")


if __name__ == "__main__":
    main()
