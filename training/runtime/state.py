"""Resumable training state as safetensors plus JSON: models, optimisers, counters and RNG streams.

Never a pickle: tensors go into the safetensors body under dotted names, everything else (param
groups, step counters, numpy RNG state) into its JSON metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from gym_diamond.atomic import replace_atomic
from gym_diamond.errors import UserError
from gym_diamond.integrity import DIGEST_KEY, tensors_digest, verify_tensors

STATE_KEY = "training_state"


def flatten_tensors(tree: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """Move the tensors of a nested dict/list into ``tensors`` (by dotted name); return the JSON rest."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {"__dict__": [[k, flatten_tensors(v, f"{prefix}.{k}", tensors)] for k, v in tree.items()]}
    if isinstance(tree, (list, tuple)):
        return [flatten_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(tree)]
    return tree


def unflatten_tensors(tree: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Rebuild the nested state from the skeleton and the flat tensors."""
    if isinstance(tree, dict) and "__tensor__" in tree:
        return tensors[tree["__tensor__"]]
    if isinstance(tree, dict) and "__dict__" in tree:
        return {k: unflatten_tensors(v, tensors) for k, v in tree["__dict__"]}
    if isinstance(tree, list):
        return [unflatten_tensors(v, tensors) for v in tree]
    return tree


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write a nested dict of tensors and JSON values atomically (temp file, then rename)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = flatten_tensors(state, "s", tensors)
    metadata = {STATE_KEY: json.dumps(skeleton), DIGEST_KEY: tensors_digest(tensors)}
    replace_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))


def load_state(path: Path) -> dict[str, Any]:
    """Read a state written by ``save_state``."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise UserError(f"{path}: not a readable training state ({e})") from e
    if STATE_KEY not in meta:
        raise UserError(f"{path}: not a gym-diamond training state (no {STATE_KEY!r} metadata)")
    verify_tensors(path, tensors, meta.get(DIGEST_KEY))
    return unflatten_tensors(json.loads(meta[STATE_KEY]), tensors)


def rng_state(rng: np.random.Generator, torch_generator: torch.Generator) -> dict[str, Any]:
    """The numpy and torch generators' states, JSON- and tensor-ready."""
    return {"numpy": rng.bit_generator.state, "torch": torch_generator.get_state()}


def restore_rng(state: dict[str, Any], rng: np.random.Generator, torch_generator: torch.Generator) -> None:
    """Put the generators back in the states ``rng_state`` saved."""
    rng.bit_generator.state = state["numpy"]
    torch_generator.set_state(state["torch"])


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """An optimizer's state_dict with int keys made strings (JSON object keys)."""
    sd = optimizer.state_dict()
    return {"state": {str(k): v for k, v in sd["state"].items()}, "param_groups": sd["param_groups"]}


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an optimiser's state saved by ``optimizer_state``."""
    optimizer.load_state_dict({"state": {int(k): v for k, v in state["state"].items()},
                               "param_groups": state["param_groups"]})
