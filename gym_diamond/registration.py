"""``DiamondDream/<Game>-v0`` ids for every ALE game, and where each finds its world model."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import gymnasium as gym
import torch

from gym_diamond.acceleration import Acceleration
from gym_diamond.checkpoint import Checkpoint, load_checkpoint
from gym_diamond.config import check_denoising_steps, check_sampler_start
from gym_diamond.errors import UserError
from gym_diamond.games import ATARI_GAMES, atari_game_name, normalise_game_name

NAMESPACE = "DiamondDream"
ANY_DREAM_ID = f"{NAMESPACE}/Dream-v0"
"""The id that opens any checkpoint, of an Atari game or of another environment: ``gym.make(ANY_DREAM_ID,
checkpoint=PATH)``."""
HOME_VARIABLE = "GYM_DIAMOND_HOME"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
DEFAULT_MAX_EPISODE_STEPS = 1000


def env_id(game: str) -> str:
    """The gymnasium id that opens a dream of ``game``: ``DiamondDream/Pong-v0`` for an Atari game, the one for any
    checkpoint (``DiamondDream/Dream-v0``) for another environment's."""
    atari = atari_game_name(game)
    return f"{NAMESPACE}/{atari}-v0" if atari is not None else ANY_DREAM_ID


def _same_game(a: str, b: str) -> bool:
    return normalise_game_name(a) == normalise_game_name(b)


def user_cache_dir() -> Path:
    """The per-user folder for world models: ``$XDG_CACHE_HOME/gym-diamond``, by default ``~/.cache/gym-diamond``."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "gym-diamond"


def install_dir() -> Path:
    """Where installed world models go (``training.diamond.importer --install``): $GYM_DIAMOND_HOME if set,
    else :func:`user_cache_dir`. Both are searched by :func:`find_checkpoint`."""
    home = os.environ.get(HOME_VARIABLE)
    return Path(home).expanduser() if home else user_cache_dir()


def search_dirs() -> list[Path]:
    """Where ``gym.make`` looks for ``<Game>.safetensors``, in order."""
    home = os.environ.get(HOME_VARIABLE)
    return ([Path(home).expanduser()] if home else []) + [user_cache_dir(), PRETRAINED_DIR]


def find_checkpoint(game: str, checkpoint: str | os.PathLike | None = None) -> Path:
    """The checkpoint for ``game``: the ``checkpoint`` argument, else <Game>.safetensors in $GYM_DIAMOND_HOME,
    in the per-user cache or shipped in the package; otherwise a FileNotFoundError saying how to get one."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if path.is_dir():
            inside = path / "world_model.safetensors"
            hint = f" (pass the file inside it: {inside})" if inside.is_file() else ""
            raise IsADirectoryError(f"checkpoint={str(checkpoint)!r} is a directory, not a world model file"
                                    f"{hint}")
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint={str(checkpoint)!r} does not exist")
        return path
    for folder in search_dirs():
        if (folder / f"{game}.safetensors").is_file():
            return folder / f"{game}.safetensors"
    home = os.environ.get(HOME_VARIABLE)
    home_text = f"${HOME_VARIABLE}={home!r}" if home else f"${HOME_VARIABLE} is not set"
    raise FileNotFoundError(
        f"no world model for {game}: (1) pass gym.make({env_id(game)!r}, checkpoint=PATH), or (2) put "
        f"{game}.safetensors in one of {[str(d) for d in search_dirs()]} ({home_text}). DIAMOND's own model "
        f"(26 Atari 100k games): python -m training.diamond.importer --game {game} --from-hub; or train one: "
        f"python -m training.pipeline --game {game}")


def load_dream(game: str | None, checkpoint: str | os.PathLike | None, device: torch.device | str, *,
               denoising_steps: int | None = None, sampler_start: str | None = None, precision: str | None = None,
               compile: bool = False, cuda_graphs: bool = False) -> Checkpoint:
    """Find and load the world model for ``game``, set up for imagination; another game's checkpoint is an error.

    ``denoising_steps`` overrides the checkpoint's sampler steps (fewer: faster, blurrier); ``sampler_start`` where
    its sampler starts (``"unit"``: DIAMOND's unit-variance noise; ``"sigma_max"``: EDM's, noise at the first step's
    level, with which several steps can draw one of a bounce's outcomes instead of sharpening their mean);
    ``precision``/``compile``/``cuda_graphs`` are the :class:`~gym_diamond.acceleration.Acceleration`
    switches (None precision: the device's default, bf16 on a bf16 GPU, else fp32).
    """
    if game is None and checkpoint is None:
        raise UserError(f"give the game (e.g. gym.make('{NAMESPACE}/Pong-v0')) or a checkpoint: "
                        f"gym.make({ANY_DREAM_ID!r}, checkpoint=PATH) opens any world model")
    if denoising_steps is not None:  # before any file is read
        check_denoising_steps(denoising_steps)
    if sampler_start is not None:
        check_sampler_start(sampler_start)
    acceleration = Acceleration.default_for(device)
    acceleration = Acceleration(precision=precision or acceleration.precision,
                                channels_last=acceleration.channels_last, compile=compile, cuda_graphs=cuda_graphs)
    path = find_checkpoint(game, checkpoint) if game is not None else Path(checkpoint)
    ckpt = load_checkpoint(path, device=device)
    if game is not None and not _same_game(ckpt.game, game):
        raise UserError(f"{path} is a world model of {ckpt.game!r}, but the environment is {env_id(game)!r}; "
                        f"use gym.make({env_id(ckpt.game)!r}, checkpoint=...) or a {game} checkpoint")
    warn_failed_gates(path, ckpt.provenance)
    model = ckpt.world_model
    if denoising_steps is not None:
        model.config = model.config.with_denoising_steps(denoising_steps)
    if sampler_start is not None:
        model.config = model.config.with_sampler_start(sampler_start)
    model.accelerate(acceleration)
    return ckpt


_WARNED: set[str] = set()


def warn_failed_gates(path: Path, provenance: dict) -> None:
    """Warn (once per file) when a world model's own metadata says it failed its quality gates.

    A dream can look right and still be useless for control (a Pong dream without its ball): a user who
    opens one by name should hear so at once, not only in the README.
    """
    gates = provenance.get("quality_gates") or {}
    if gates.get("passed", True) or str(path) in _WARNED:
        return
    _WARNED.add(str(path))
    failed = gates.get("failed") or []
    first = f": {failed[0]}" + (f" (and {len(failed) - 1} more)" if len(failed) > 1 else "") if failed else ""
    warnings.warn(f"{path.name} failed its quality gates{first}. The list: gym_diamond.checkpoint.read_metadata("
                  f"path)['provenance']['quality_gates']['failed']", UserWarning, stacklevel=3)


def register_envs() -> None:
    """Register ``DiamondDream/<Game>-v0`` for every game ale-py ships and ``DiamondDream/Dream-v0`` for any
    checkpoint (idempotent; ale-py is not imported)."""
    if ANY_DREAM_ID not in gym.registry:
        gym.register(id=ANY_DREAM_ID, entry_point="gym_diamond.envs.dream_env:DreamEnv",
                     vector_entry_point="gym_diamond.envs.vector:DreamVectorEnv",
                     max_episode_steps=DEFAULT_MAX_EPISODE_STEPS)
    for game in ATARI_GAMES:
        if env_id(game) in gym.registry:
            continue
        gym.register(
            id=env_id(game),
            entry_point="gym_diamond.envs.dream_env:DreamEnv",
            vector_entry_point="gym_diamond.envs.vector:DreamVectorEnv",
            max_episode_steps=DEFAULT_MAX_EPISODE_STEPS,
            kwargs={"game": game},
        )
