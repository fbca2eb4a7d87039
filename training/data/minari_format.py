"""Lossless conversion between our episode datasets and Minari, the Farama Foundation's format for recorded episodes.

Minari stores what ``Episode`` holds under other names: ``observations`` (T+1 frames, the first one
included), ``actions``, ``rewards``, ``terminations`` and ``truncations`` (T each). ``to_minari`` writes
them as they are: raw uint8 frames (Minari's JPEG encoding, on by default for image spaces, is turned off),
int64 actions of a ``Discrete(num_actions)`` space, float32 rewards, and our ``life_loss`` in the per-step
``infos`` (``infos["life_loss"]`` has T+1 entries like every Minari info: entry 0 belongs to the reset,
entry t+1 to transition t). The game goes into the dataset's metadata under ``"gym_diamond"`` (Minari keeps
unknown metadata keys), so ``from_minari`` gives back exactly what was written.

A Minari dataset is named by a path (the folder holding its ``metadata.json``, or the folder above it,
as under Minari's datasets root) or by a dataset id ``(namespace/)name-vN`` under Minari's datasets root
(``MINARI_DATASETS_PATH``, default ``~/.minari/datasets``). A ``str`` is taken as an id when it has that
form and is neither absolute, nor starts with ``.`` or ``~``, nor names an existing folder; anything else,
and every ``os.PathLike``, is a path.

Minari is an optional dependency (``pip install "gym-diamond[minari]"``), imported only here, when called.
"""

from __future__ import annotations

import inspect
import os
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name, normalise_game_name
from training.data.dataset import Episode, EpisodeDataset, environment_actions

__all__ = ["from_minari", "is_minari_dataset", "local_episodes", "to_minari"]

METADATA_KEY = "gym_diamond"  # our free field in the Minari metadata: {"format": 1, "game": ...}
METADATA_FORMAT = 1
_INSTALL_HINT = 'pip install "gym-diamond[minari]"'
_METADATA_FILE = "metadata.json"  # Minari's METADATA_FILE_NAME


def _import_minari() -> Any:
    """minari is optional: import it on use, and say how to get it when it is missing."""
    try:
        import h5py  # noqa: F401  (Minari's HDF5 storage: minari[hdf5])
        import minari
    except ImportError as e:
        raise ImportError(f"Minari conversion needs minari with HDF5 support: {_INSTALL_HINT}") from e
    return minari


def _as_dataset_id(target: str | os.PathLike[str]) -> str | None:
    """``target`` as a Minari dataset id, or None when it names a folder (see the module docstring)."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    if not isinstance(target, str):
        return None
    if target.startswith((".", "~")) or Path(target).is_absolute() or Path(target).is_dir():
        return None
    match = DATASET_ID_RE.fullmatch(target)
    return target if match is not None and match.group("version") is not None else None


def _check_dataset_id(dataset_id: str) -> str:
    """Minari refuses to load a dataset whose id does not parse, and its parser needs the ``-vN`` version."""
    from minari.dataset.minari_dataset import DATASET_ID_RE

    match = DATASET_ID_RE.fullmatch(dataset_id) if isinstance(dataset_id, str) else None
    if match is None or match.group("version") is None:
        raise UserError(f"dataset_id must be a Minari dataset id '(namespace/)name-vN', got {dataset_id!r}")
    return dataset_id


def _default_dataset_id(game: str | None) -> str:
    name = re.sub(r"[^\w-]+", "_", game or "").strip("_-") or "episodes"
    return f"{name}-v0"


def to_minari(dataset: EpisodeDataset, target: str | os.PathLike[str], *, num_actions: int | None = None,
              dataset_id: str | None = None) -> Path:
    """Write every episode of ``dataset`` as a Minari dataset; returns the folder holding its ``metadata.json``.

    ``target`` is a folder (created if missing; it must not hold a Minari dataset yet) or a dataset id,
    written under Minari's datasets root as ``<root>/<id>/data`` (as ``minari.create_dataset_from_buffers``
    does, which refuses an id that exists). ``num_actions`` sizes the ``Discrete`` action space; by default
    the dataset's action names tell it (``environment_actions``: stored ones, or an Atari game's), since the
    largest action taken may be below it. The action names go with the game into our metadata field.
    ``dataset_id`` (default: the id ``target``, else ``<game>-v0``) is what Minari reports as the id.
    On an error nothing that this call wrote is left behind.
    """
    minari = _import_minari()
    from gymnasium import spaces
    from minari.dataset.minari_storage import MinariStorage

    if not isinstance(dataset, EpisodeDataset):
        raise TypeError(f"to_minari expects an EpisodeDataset, got {type(dataset).__name__}")
    meanings: list[str] | None = None
    if dataset.game is not None:
        try:
            meanings = environment_actions(dataset)[1]
        except ValueError:
            meanings = None
    if num_actions is None:
        if meanings is None:
            raise UserError(f"the dataset at {dataset.root} names no actions: pass num_actions (the env's "
                            f"action_space.n)")
        num_actions = len(meanings)
    if meanings is not None and len(meanings) != num_actions:
        meanings = None
    if isinstance(num_actions, bool) or not isinstance(num_actions, (int, np.integer)) or num_actions < 1:
        raise UserError(f"num_actions must be an int >= 1, got {num_actions!r}")
    if len(dataset) == 0 or dataset.frame_shape is None:
        raise UserError(f"the dataset at {dataset.root} has no episodes to convert")
    frame_shape = tuple(dataset.frame_shape)
    if len(frame_shape) != 3 or frame_shape[2] != 3:
        raise UserError(f"Minari conversion takes RGB frames (h, w, 3), the dataset holds {frame_shape}")

    target_id = _as_dataset_id(target)
    if target_id is not None:
        if dataset_id is not None and dataset_id != target_id:
            raise UserError(f"dataset_id {dataset_id!r} differs from the dataset id target {target_id!r}")
        dataset_id = target_id
        from minari.dataset.minari_dataset import parse_dataset_id
        from minari.namespace import create_namespace, list_local_namespaces
        from minari.storage.datasets_root_dir import get_dataset_path

        root = Path(get_dataset_path(dataset_id))
        if root.exists():
            raise UserError(f"a Minari dataset with id {dataset_id!r} already exists at {root}")
        namespace = parse_dataset_id(dataset_id)[0]
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        path, created = root / "data", root
    else:
        dataset_id = _check_dataset_id(dataset_id if dataset_id is not None else _default_dataset_id(dataset.game))
        path = Path(os.fspath(target)).expanduser()
        if (path / _METADATA_FILE).exists():
            raise UserError(f"a Minari dataset is already stored at {path}")
        created = None if path.exists() else path

    # Minari releases before the jpeg_encoding flag either store frames raw or JPEG them unasked: checked below
    jpeg_flag = "jpeg_encoding" in inspect.signature(MinariStorage.new).parameters
    try:
        path.mkdir(parents=True, exist_ok=True)
        storage = MinariStorage.new(
            path,
            observation_space=spaces.Box(0, 255, frame_shape, np.uint8),
            action_space=spaces.Discrete(int(num_actions)),
            data_format="hdf5",
            **({"jpeg_encoding": False} if jpeg_flag else {}),
        )
        game = dataset.game
        storage.update_metadata({
            "dataset_id": dataset_id,
            "minari_version": minari.__version__,
            "description": f"gym-diamond episodes of {game}" if game else "gym-diamond episodes",
            METADATA_KEY: {"format": METADATA_FORMAT, "game": game, "action_meanings": meanings},
        })
        for i in range(len(dataset)):
            episode = dataset.episode(i)
            if episode.actions.min() < 0 or episode.actions.max() >= num_actions:
                raise UserError(f"episode {i} has actions in [{episode.actions.min()}, {episode.actions.max()}], "
                                f"outside the {num_actions} actions of num_actions")
            storage.update_episodes([_buffer(episode)])
            if i == 0 and not jpeg_flag:
                stored = next(iter(storage.get_episodes([0])))["observations"]
                if not np.array_equal(stored, episode.frames):
                    raise RuntimeError(f"this minari ({minari.__version__}) JPEG-encodes image observations "
                                       f"and cannot turn it off: upgrade it ({_INSTALL_HINT})")
    except BaseException:
        if created is not None:
            shutil.rmtree(created, ignore_errors=True)
        else:
            for name in (_METADATA_FILE, "main_data.hdf5"):
                (path / name).unlink(missing_ok=True)
        raise
    return path


def _buffer(episode: Episode) -> Any:
    """One of our episodes as a Minari EpisodeBuffer; life_loss as a T+1-entry info (entry 0: the reset's)."""
    from minari.data_collector.episode_buffer import EpisodeBuffer

    return EpisodeBuffer(
        observations=episode.frames,
        actions=episode.actions,
        rewards=episode.rewards,
        terminations=episode.terminated,
        truncations=episode.truncated,
        infos={"life_loss": np.concatenate([np.zeros(1, dtype=bool), episode.life_loss])},
    )


def _open(source: str | os.PathLike[str]) -> Any:
    """A MinariDataset from a local dataset id or folder (its ``data`` folder, or the one above it)."""
    minari = _import_minari()

    dataset_id = _as_dataset_id(source)
    if dataset_id is not None:
        return minari.load_dataset(dataset_id)
    path = Path(os.fspath(source)).expanduser()
    if not (path / _METADATA_FILE).exists() and (path / "data" / _METADATA_FILE).exists():
        path = path / "data"
    if not (path / _METADATA_FILE).exists():
        raise FileNotFoundError(f"no Minari dataset at {path} (no {_METADATA_FILE} there or in {path / 'data'})")
    return minari.MinariDataset(path)


def _image_space(space: Any) -> tuple[bool, str | None]:
    """(whether ``space`` holds uint8 RGB frames, the Dict key they are under or None)."""
    from gymnasium import spaces

    def is_rgb(s: Any) -> bool:
        return isinstance(s, spaces.Box) and s.dtype == np.uint8 and len(s.shape) == 3 and s.shape[2] == 3

    if is_rgb(space):
        return True, None
    if isinstance(space, spaces.Dict) and "image" in space.spaces and is_rgb(space.spaces["image"]):
        return True, "image"
    return False, None


def from_minari(source: str | os.PathLike[str], out: str | os.PathLike[str], *,
                game: str | None = None) -> EpisodeDataset:
    """Read a local Minari dataset (an id or a folder) into a new EpisodeDataset at ``out``, episode by episode.

    Observations must be uint8 RGB frames (h, w, 3), or a Dict holding them under ``"image"``; actions
    must be Discrete (a ``start`` offset is removed: ours count from 0). ``life_loss`` comes from
    ``infos["life_loss"]`` when recorded (T+1 entries as Minari records infos, or T), else all False.
    The game is the one ``to_minari`` recorded, else ``game``, else the env spec's id, else the dataset
    id; the action names those ``to_minari`` recorded, else an Atari game's, else ``ACTION_<i>``; a ``game`` that
    contradicts the recorded one is a ValueError. ``out`` must hold no episodes yet;
    if an episode cannot be converted, the episodes already stored there are removed again.
    """
    from gymnasium import spaces

    minari_dataset = _open(source)
    observation_space, action_space = minari_dataset.observation_space, minari_dataset.action_space
    images, image_key = _image_space(observation_space)
    if not images:
        raise UserError(f"Minari dataset {minari_dataset.id!r}: observations must be uint8 RGB images (h, w, 3) "
                        f"or a Dict with an 'image' key holding them, got observation space {observation_space}")
    if not isinstance(action_space, spaces.Discrete):
        raise UserError(f"Minari dataset {minari_dataset.id!r}: actions must be Discrete, got action space "
                        f"{action_space}")

    recorded = minari_dataset.storage.metadata.get(METADATA_KEY)
    recorded_game = recorded.get("game") if isinstance(recorded, dict) else None
    if recorded_game is not None and game is not None and normalise_game_name(game) != normalise_game_name(
            recorded_game):
        raise UserError(f"the Minari dataset records game {recorded_game!r}, not {game!r}")
    env_spec = minari_dataset.env_spec
    name = recorded_game or game or (env_spec.id if env_spec is not None else None) or minari_dataset.id

    meanings = recorded.get("action_meanings") if isinstance(recorded, dict) else None
    if meanings is None and atari_game_name(name) is None:  # another environment: its actions by number
        meanings = [f"ACTION_{i}" for i in range(int(action_space.n))]
    dataset = EpisodeDataset(out, game=name, action_meanings=meanings)
    if len(dataset):
        raise UserError(f"{dataset.root} already holds {len(dataset)} episodes: from_minari needs a new dataset")
    start = int(action_space.start)
    try:
        for data in minari_dataset.iterate_episodes():
            dataset.append(_episode(data, image_key, start))
    except BaseException:
        dataset.truncate(0)
        raise
    return dataset


def _episode(data: Any, image_key: str | None, start: int) -> Episode:
    """One Minari EpisodeData as our Episode, shapes checked so a mismatch names the Minari episode."""
    frames = data.observations[image_key] if image_key is not None else data.observations
    frames = np.asarray(frames)
    T = len(data.rewards)
    if frames.shape[0] != T + 1:
        raise UserError(f"Minari episode {data.id} has {frames.shape[0]} observations for {T} steps, "
                        f"expected {T + 1}")
    infos = data.infos or {}
    life_loss = np.asarray(infos["life_loss"], dtype=bool) if "life_loss" in infos else np.zeros(T, dtype=bool)
    if life_loss.shape == (T + 1,):
        life_loss = life_loss[1:]  # entry 0 is the reset's info
    if life_loss.shape != (T,):
        raise UserError(f"Minari episode {data.id} has infos['life_loss'] of shape {life_loss.shape} for {T} "
                        f"steps, expected ({T + 1},) or ({T},)")
    try:
        return Episode(
            frames=frames.astype(np.uint8, copy=False),
            actions=np.asarray(data.actions).astype(np.int64, copy=False).reshape(T) - start,
            rewards=np.asarray(data.rewards).astype(np.float32, copy=False).reshape(T),
            terminated=np.asarray(data.terminations).astype(bool, copy=False).reshape(T),
            truncated=np.asarray(data.truncations).astype(bool, copy=False).reshape(T),
            life_loss=life_loss,
        )
    except ValueError as e:
        raise UserError(f"Minari episode {data.id}: {e}") from e


def is_minari_dataset(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` names a local Minari dataset: a folder holding its ``metadata.json`` (or ``data/`` with
    one), or the id of one in Minari's datasets folder. Our own dataset folders hold ``index.json`` instead."""
    path = Path(os.fspath(source)).expanduser()
    if path.is_dir():
        return (path / _METADATA_FILE).is_file() or (path / "data" / _METADATA_FILE).is_file()
    if path.exists() or not isinstance(source, str):
        return False
    try:
        _import_minari()
    except ImportError:
        return False
    from minari.storage.datasets_root_dir import get_dataset_path

    dataset_id = _as_dataset_id(source)
    return dataset_id is not None and (Path(get_dataset_path(dataset_id)) / "data" / _METADATA_FILE).is_file()


def local_episodes(source: str | os.PathLike[str], converted: str | os.PathLike[str]) -> Path:
    """Where our trainers read ``source`` from: our dataset folder itself, or, for a Minari dataset, its conversion
    at ``converted`` (made once by :func:`from_minari`, reused by a resumed run)."""
    if not is_minari_dataset(source):
        path = Path(os.fspath(source)).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"dataset {os.fspath(source)!r} not found: no such folder, nor a local Minari "
                                    f"dataset of that id (python -m training.data.collect --out FOLDER writes one)")
        return path
    converted = Path(os.fspath(converted))
    if not (len(EpisodeDataset(converted)) if (converted / "index.json").is_file() else 0):
        from_minari(source, converted)
    return converted
