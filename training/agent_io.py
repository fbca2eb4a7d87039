"""Save and load DIAMOND actor-critics as safetensors plus their JSON config (never pickles)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from training.actor_critic import ActorCritic, ActorCriticConfig

CONFIG_KEY = "actor_critic_config"


def save_actor_critic(path: str | Path, model: ActorCritic, game: str) -> Path:
    """Save an actor-critic as safetensors weights plus its JSON config (no pickle)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(tmp), metadata={CONFIG_KEY: json.dumps(model.config.to_dict()), "game": game})
    os.replace(tmp, path)
    return path


def load_actor_critic(path: str | Path, device: torch.device | str = "cpu") -> ActorCritic:
    """Rebuild an actor-critic saved by ``save_actor_critic``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no actor-critic at {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        if CONFIG_KEY not in meta:
            raise ValueError(f"{path} is not a gym-diamond actor-critic (no {CONFIG_KEY!r} metadata)")
        model = ActorCritic(ActorCriticConfig.from_dict(json.loads(meta[CONFIG_KEY])))
        model.load_state_dict({k: f.get_tensor(k) for k in f.keys()})
    return model.to(device)
