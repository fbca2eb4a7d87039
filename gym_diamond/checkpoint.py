"""Checkpoints: one .safetensors file holding weights, a bank of real start contexts and JSON metadata.

safetensors stores tensors and a str->str metadata map and executes nothing on load, unlike
pickles. The metadata key ``gym_diamond`` holds a JSON document: format version, game, action
meanings, the full WorldModelConfig and provenance (how the model was trained).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from gym_diamond.atomic import replace_atomic
from gym_diamond.config import WorldModelConfig
from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name
from gym_diamond.integrity import DIGEST_KEY, tensors_digest, verify_tensors
from gym_diamond.world_model import WorldModel

FORMAT_VERSION = 2
METADATA_KEY = "gym_diamond"
START_FRAMES = "start.frames"
START_ACTIONS = "start.actions"
LEGACY_VARIANTS = {
    "denoiser": {"unet": {"attention_residual": "input"}},
    "sampler": {"quantization": "round"},
    "rew_end": {"attention_residual": "input", "norm_out": True},
}
"""Version 1 (gym-diamond 0.1, before the networks matched DIAMOND's) differed from DIAMOND in these
config fields; a version-1 file loads with them, so its model computes what it computed when saved."""


def _with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``config`` with the missing keys of (nested) ``defaults`` filled in."""
    out = dict(config)
    for key, value in defaults.items():
        if isinstance(value, dict):
            out[key] = _with_defaults(out.get(key, {}), value)
        else:
            out.setdefault(key, value)
    return out


@dataclass
class StartBank:
    """Real contexts to start dreams from: frames uint8 (k, L, h, w, c) and the actions taken at them (k, L)."""

    frames: np.ndarray
    actions: np.ndarray

    def __post_init__(self) -> None:
        if self.frames.dtype != np.uint8 or self.frames.ndim != 5:
            raise UserError(f"start frames must be uint8 (k, L, h, w, c), got {self.frames.dtype} "
                            f"{self.frames.shape}")
        if self.actions.shape != self.frames.shape[:2]:
            raise UserError(f"start actions must be (k, L) = {self.frames.shape[:2]}, got {self.actions.shape}")
        if len(self.frames) == 0:
            raise UserError("the start bank is empty: a dream needs at least one real context to start from")
        self.actions = self.actions.astype(np.int64)

    def __len__(self) -> int:
        return len(self.frames)


@dataclass
class Checkpoint:
    """A loaded world model with what it dreams: its game (an Atari game's name, or the Gymnasium id of the
    environment its data was recorded in), the action names, the start contexts and how it was made."""

    world_model: WorldModel
    game: str
    action_meanings: list[str]
    start_bank: StartBank
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def config(self) -> WorldModelConfig:
        return self.world_model.config

    @property
    def env_id(self) -> str:
        """The Gymnasium id of the environment it dreams: ``ALE/<Game>-v5`` for an Atari game, else ``game``."""
        atari = atari_game_name(self.game)
        return f"ALE/{atari}-v5" if atari is not None else self.game

    @property
    def frame_size(self) -> int:
        """The side of the square RGB frames it dreams."""
        return self.config.denoiser.image_size


def _library_versions() -> dict[str, str]:
    import gymnasium
    import safetensors

    return {"torch": torch.__version__, "gymnasium": gymnasium.__version__, "safetensors": safetensors.__version__,
            "numpy": np.__version__}


def save_checkpoint(path: str | Path, world_model: WorldModel, *, game: str, action_meanings: list[str],
                    start_bank: StartBank, provenance: dict[str, Any] | None = None,
                    half: bool = False) -> Path:
    """Write a checkpoint atomically (temp file, then rename). ``half`` stores weights as float16."""
    path = Path(path)
    k, L = start_bank.actions.shape
    cfg = world_model.config
    if len(action_meanings) != cfg.num_actions:
        raise UserError(f"{len(action_meanings)} action meanings for a model of {cfg.num_actions} actions")
    expected = (cfg.denoiser.image_size, cfg.denoiser.image_size, cfg.denoiser.image_channels)
    if L != cfg.denoiser.context_length or start_bank.frames.shape[2:] != expected:
        raise UserError(f"start bank frames {start_bank.frames.shape} do not fit the model: expected "
                        f"(k, {cfg.denoiser.context_length}, {', '.join(map(str, expected))})")
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in world_model.state_dict().items():
        t = tensor.detach().cpu()
        if half and t.is_floating_point():
            t = t.half()
        tensors[name] = t.contiguous()
    tensors[START_FRAMES] = torch.from_numpy(np.ascontiguousarray(start_bank.frames))
    tensors[START_ACTIONS] = torch.from_numpy(np.ascontiguousarray(start_bank.actions))
    meta = {
        "format_version": FORMAT_VERSION,
        DIGEST_KEY: tensors_digest(tensors),
        "game": game,
        "action_meanings": list(action_meanings),
        "config": cfg.to_dict(),
        "provenance": {"library_versions": _library_versions(), **(provenance or {})},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(meta)}))
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The checkpoint's JSON metadata, validated, without loading any tensor."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a checkpoint file: pass the .safetensors inside it "
                                f"(e.g. {path / 'world_model.safetensors'})")
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = (f.metadata() or {}).get(METADATA_KEY)
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"{path} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    if raw is None:
        raise UserError(
            f"{path} is a safetensors file but not a gym-diamond checkpoint (no '{METADATA_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: the checkpoint metadata is not valid JSON: {e}") from e
    version = meta.get("format_version")
    if version not in (1, FORMAT_VERSION):
        raise UserError(f"{path}: checkpoint format version {version!r}, but this gym-diamond reads versions "
                        f"1 to {FORMAT_VERSION}: upgrade gym-diamond to read it")
    for key in ("game", "action_meanings", "config"):
        if key not in meta:
            raise UserError(f"{path}: the checkpoint metadata has no '{key}'")
    if version == 1 and isinstance(meta["config"], dict):
        meta["config"] = _with_defaults(meta["config"], LEGACY_VARIANTS)
    return meta


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu", *, verify: bool = True) -> Checkpoint:
    """Load and validate a checkpoint; every problem names the file and what is wrong.

    ``verify`` checks the tensor data against the sha256 saved with it and that the weights are finite
    (``gym_diamond.integrity``); turn it off only to measure what it costs.
    """
    path = Path(path)
    meta = read_metadata(path)
    try:
        config = WorldModelConfig.from_dict(meta["config"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{path}: invalid world model config: {e}") from e
    if len(meta["action_meanings"]) != config.num_actions:
        raise UserError(f"{path}: {len(meta['action_meanings'])} action meanings but the config has "
                        f"{config.num_actions} actions")
    world_model = WorldModel(config)
    expected = world_model.state_dict()
    try:
        with safe_open(str(path), framework="pt") as f:
            names = set(f.keys())
            missing = sorted(set(expected) - names)
            if missing:
                raise UserError(f"{path}: missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")
            for required in (START_FRAMES, START_ACTIONS):
                if required not in names:
                    raise UserError(f"{path}: missing tensor '{required}' (the start-context bank)")
            stored = {name: f.get_tensor(name) for name in names}
    except SafetensorError as e:
        raise UserError(f"{path} could not be read (truncated or corrupt?): {e}") from e
    if verify:
        verify_tensors(path, stored, meta.get(DIGEST_KEY))
    state = {}
    for name, ref in expected.items():
        t = stored[name]
        if t.shape != ref.shape:
            raise UserError(f"{path}: tensor '{name}' has shape {tuple(t.shape)} but the config "
                            f"implies {tuple(ref.shape)}: config and weights do not match")
        state[name] = t.to(ref.dtype)
    bank = StartBank(stored[START_FRAMES].numpy(), stored[START_ACTIONS].numpy())
    world_model.load_state_dict(state)
    world_model.to(device).eval()
    return Checkpoint(world_model, meta["game"], list(meta["action_meanings"]), bank, meta.get("provenance", {}))
