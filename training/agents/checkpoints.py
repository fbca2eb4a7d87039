"""Save and load DIAMOND actor-critics as safetensors plus their JSON config (never pickles)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gym_diamond.atomic import replace_atomic
from gym_diamond.errors import UserError
from gym_diamond.integrity import DIGEST_KEY, tensors_digest, verify_tensors
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig

CONFIG_KEY = "actor_critic_config"
PROVENANCE_KEY = "provenance"


def save_actor_critic(path: str | Path, model: ActorCritic, game: str,
                      provenance: dict[str, Any] | None = None) -> Path:
    """Save an actor-critic as safetensors weights plus its JSON config (no pickle); ``provenance`` (JSON-ready:
    where and how long it trained, its real-game score) travels in the metadata."""
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    metadata = {CONFIG_KEY: json.dumps(model.config.to_dict()), "game": game, DIGEST_KEY: tensors_digest(tensors)}
    if provenance is not None:
        metadata[PROVENANCE_KEY] = json.dumps(provenance)
    replace_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    return path


def read_actor_critic_provenance(path: str | Path) -> dict[str, Any]:
    """The provenance saved with an actor-critic (``{}`` when it was saved without one), weights unread."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta.get(PROVENANCE_KEY, "{}"))


def load_actor_critic(path: str | Path, device: torch.device | str = "cpu") -> ActorCritic:
    """Rebuild an actor-critic saved by ``save_actor_critic``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: pass the actor-critic file inside it "
                                f"(e.g. {path / 'actor_critic.safetensors'})")
    if not path.is_file():
        raise FileNotFoundError(f"no actor-critic at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except SafetensorError as e:
        raise UserError(f"{path} could not be read (truncated or corrupt?): {e}") from e
    if CONFIG_KEY not in meta:
        raise UserError(f"{path} is not a gym-diamond actor-critic (no {CONFIG_KEY!r} metadata)")
    verify_tensors(path, tensors, meta.get(DIGEST_KEY))
    model = ActorCritic(ActorCriticConfig.from_dict(json.loads(meta[CONFIG_KEY])))
    try:
        model.load_state_dict(tensors)
    except RuntimeError as e:
        raise UserError(f"{path}: the weights do not fit the config saved with them: {e}") from e
    return model.to(device)
