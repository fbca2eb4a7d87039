"""Real episodes on disk (uint8 frames) and random segments of them for training.

Layout of a dataset folder ``root``::

    root/index.json              format, game, frame_shape, num_steps, episodes: [{file, length, return, fingerprint}]
    root/episodes/000000.npz     one episode per file: frames, actions, rewards, terminated, truncated, life_loss

Episode files are plain ``np.savez_compressed`` archives (no pickle: they are loaded with
``allow_pickle=False``). An append writes the episode to a ``.tmp`` file and renames it into place
(``os.replace`` is atomic), then rewrites the index the same way, so an interrupted run never leaves a
half-written file where a reader looks; stale ``.tmp`` files are ignored. If a run stops between the
two renames, the next opening finds the complete episode file the index does not list yet and adds
it. One process appends at a time.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from gym_diamond.atomic import write_atomic
from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name, normalise_game_name

__all__ = ["Episode", "EpisodeDataset", "Segment", "environment_actions"]

FORMAT_VERSION = 1
FINGERPRINT_CHARS = 16  # 64 bits: no two of a million episodes share one by chance
DIAMOND_SAMPLE_WEIGHTS = (0.1, 0.1, 0.1, 0.7)  # DIAMOND's config/trainer.yaml: 4 recency groups, newest last

_DTYPES = {
    "frames": np.uint8,
    "actions": np.int64,
    "rewards": np.float32,
    "terminated": np.bool_,
    "truncated": np.bool_,
    "life_loss": np.bool_,
}


@dataclass
class Episode:
    """One episode of T transitions: ``frames[t]`` --``actions[t]``--> ``frames[t + 1]``.

    frames: (T+1, h, w, c) uint8 (64x64x3 from ``make_atari_env``), the first observation included;
    actions: (T,) int64; rewards: (T,) float32 (raw game score); terminated, truncated, life_loss:
    (T,) bool. ``terminated`` and ``truncated`` may only be set on the last transition; an episode with
    neither was cut short (e.g. the end of a collection run).
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_loss: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in _DTYPES.items():
            value = getattr(self, name)
            if not isinstance(value, np.ndarray):
                raise TypeError(f"Episode.{name} must be a numpy array, got {type(value).__name__}")
            if value.dtype != dtype:
                raise UserError(f"Episode.{name} must have dtype {np.dtype(dtype)}, got {value.dtype}")
        if self.frames.ndim != 4:
            raise UserError(f"Episode.frames must have shape (T+1, h, w, c), got {self.frames.shape}")
        T = len(self.frames) - 1
        if T < 1:
            raise UserError(f"an Episode needs at least one transition (2 frames), got frames {self.frames.shape}")
        for name in ("actions", "rewards", "terminated", "truncated", "life_loss"):
            shape = getattr(self, name).shape
            if shape != (T,):
                raise UserError(f"Episode.{name} must have shape ({T},) for {T + 1} frames, got {shape}")
        if self.terminated[:-1].any() or self.truncated[:-1].any():
            t = int(np.flatnonzero(self.terminated[:-1] | self.truncated[:-1])[0])
            raise UserError(f"Episode ends at transition {t} but has {T} transitions: terminated/truncated "
                            f"may only be set on the last one")

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episode_return(self) -> float:
        return float(self.rewards.sum(dtype=np.float64))

    def arrays(self) -> dict[str, np.ndarray]:
        """The episode's arrays by name, as stored on disk."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def fingerprint(self) -> str:
        """A digest of the episode's content (frames, actions, rewards, end flags): the same episode collected again
        has the same one, wherever it lies in whichever dataset."""
        digest = hashlib.sha256()
        for name, array in self.arrays().items():
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:FINGERPRINT_CHARS]


@dataclass
class Segment:
    """A batch of B segments of S transitions, zero-padded where they leave their episode.

    frames: (B, S+1, h, w, c) uint8; actions: (B, S) int64; rewards: (B, S) float32; terminated,
    truncated, life_loss, mask: (B, S) bool. ``mask[b, k]`` says transition k is real (frames[b, k] ->
    frames[b, k+1] within the episode); ``frame_mask`` (B, S+1) says which frames are real. Padded
    entries are 0 here (action 0, reward 0, False); ``training.world_model.trainer.segment_tensors`` turns
    padded frames into DIAMOND's grey padding (0 in [-1, 1]). episode_ids: (B,) int64 and
    starts: (B,) int64 give where each segment was taken (``starts`` may be negative).
    """

    frames: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    life_loss: np.ndarray
    mask: np.ndarray
    frame_mask: np.ndarray
    episode_ids: np.ndarray
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


def check_sample_weights(sample_weights: tuple[float, ...]) -> tuple[float, ...]:
    """Recency-group weights: non-negative, summing to 1 (DIAMOND's ``BatchSampler`` asserts the same)."""
    weights = tuple(float(w) for w in sample_weights)
    if not weights or any(w < 0 for w in weights) or abs(sum(weights) - 1) > 1e-6:
        raise UserError(f"sample_weights must be non-negative and sum to 1, got {sample_weights}")
    return weights


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A fixed 64-bit hash (SplitMix64's finaliser), used to split episodes stably."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)).astype(np.uint64)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


class EpisodeDataset:
    """Episodes of one game in a folder, appended as they are collected, sampled as segments.

    ``game`` names the game the episodes come from; opening an existing folder with another game
    raises ValueError (None accepts any). Episodes are loaded lazily and kept in an LRU cache of at
    most ``cache_bytes`` bytes (the default holds ~170k 64x64x3 frames: the whole Atari 100k dataset).
    """

    def __init__(self, root: str | os.PathLike[str], game: str | None = None, *, cache_bytes: int = 2 << 30,
                 compress: bool = True, action_meanings: list[str] | None = None) -> None:
        self.root = Path(root)
        self.cache_bytes = int(cache_bytes)
        self.compress = compress
        self._cache: OrderedDict[int, Episode] = OrderedDict()
        self._cached_bytes = 0
        # per episode, read lazily together (_read_event_labels): whether it terminated, its rewarded steps
        self._ends: list[bool] = []
        self._rewarded: list[np.ndarray] = []
        self._files: list[str] = []
        self._lengths: list[int] = []
        self._returns: list[float] = []
        self._fingerprints: list[str | None] = []  # None: an index written before they were, read lazily
        self.frame_shape: tuple[int, ...] | None = None
        self.game = game
        # the environment's action names, for environments other than Atari games (whose names ale-py knows)
        self.action_meanings: list[str] | None = list(action_meanings) if action_meanings is not None else None
        index_path = self.root / "index.json"
        if index_path.exists():
            try:
                index = json.loads(index_path.read_text())
                stored_game = index["game"]
                episodes = index["episodes"]
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise UserError(f"{index_path} is not a dataset index: {e}") from e
            if index.get("format") != FORMAT_VERSION:
                raise UserError(f"{index_path} has format {index.get('format')!r}, expected {FORMAT_VERSION}")
            if (game is not None and stored_game is not None
                    and normalise_game_name(game) != normalise_game_name(stored_game)):
                raise UserError(f"the dataset at {self.root} holds {stored_game!r} episodes, not {game!r}")
            self.game = stored_game if stored_game is not None else game
            self.frame_shape = tuple(index["frame_shape"]) if index.get("frame_shape") else None
            stored_meanings = index.get("action_meanings")
            if stored_meanings is not None and action_meanings is not None and list(action_meanings) != stored_meanings:
                raise UserError(f"the dataset at {self.root} has the actions {stored_meanings}, not "
                                f"{list(action_meanings)}")
            if stored_meanings is not None:
                self.action_meanings = list(stored_meanings)
            for entry in episodes:
                self._files.append(entry["file"])
                self._lengths.append(int(entry["length"]))
                self._returns.append(float(entry.get("return", 0.0)))
                self._fingerprints.append(entry.get("fingerprint"))
        self._recover()

    def refresh(self) -> None:
        """Re-read the index, so episodes that another process stored (data-parallel rank 0) show.

        Cached episodes are kept, except those whose length changed or that are gone: an unfinished
        episode is stored again, longer, under its id (training.data.collect), or a rollback dropped it.
        """
        lengths, cache, cached_bytes = self._lengths, self._cache, self._cached_bytes
        ends, rewarded, fingerprints = self._ends, self._rewarded, self._fingerprints
        self.__init__(self.root, self.game, cache_bytes=self.cache_bytes, compress=self.compress,
                      action_meanings=self.action_meanings)
        self._cache, self._cached_bytes, self._ends = cache, cached_bytes, ends[:len(self)]
        self._rewarded = rewarded[:len(self)]
        changed = [i for i, n in enumerate(lengths) if i >= len(self) or self._lengths[i] != n]
        kept = changed[0] if changed else len(lengths)
        self._fingerprints[:kept] = [new or old for new, old in zip(self._fingerprints[:kept], fingerprints[:kept],
                                                                     strict=True)]
        if changed:
            self._forget(range(changed[0], len(lengths)))

    # ------------------------------------------------------------------ sizes
    def __len__(self) -> int:
        """Number of episodes."""
        return len(self._files)

    @property
    def num_steps(self) -> int:
        """Number of transitions in all episodes together."""
        return int(sum(self._lengths))

    @property
    def lengths(self) -> np.ndarray:
        """(num_episodes,) int64: transitions per episode, oldest first."""
        return np.asarray(self._lengths, dtype=np.int64)

    def fingerprints(self, episode_ids: np.ndarray | list[int] | None = None) -> list[str]:
        """``Episode.fingerprint`` of each of ``episode_ids`` (default: all): the index holds them; an index written
        before it did has them computed from the episodes' files, once."""
        ids = range(len(self)) if episode_ids is None else [int(i) for i in episode_ids]
        for i in ids:
            if self._fingerprints[i] is None:
                self._fingerprints[i] = self._cache[i].fingerprint() if i in self._cache else \
                    self._load(self._files[i]).fingerprint()
        return [self._fingerprints[i] for i in ids]

    def lengths_digest(self, episodes: int | None = None) -> str:
        """A fingerprint of the first ``episodes`` episodes (default: all): the digest of their lengths.

        A training run records it, so that a later evaluation can tell its own dataset (perhaps grown since)
        from data collected apart, and never score episodes the run trained on as held out.
        """
        lengths = self.lengths if episodes is None else self.lengths[:episodes]
        return hashlib.sha256(lengths.tobytes()).hexdigest()[:16]

    @property
    def returns(self) -> np.ndarray:
        """(num_episodes,) float64: sum of rewards per episode."""
        return np.asarray(self._returns, dtype=np.float64)

    def __repr__(self) -> str:
        return f"EpisodeDataset({str(self.root)!r}, game={self.game!r}, episodes={len(self)}, steps={self.num_steps})"

    # ------------------------------------------------------------------ writing
    def append(self, episode: Episode) -> int:
        """Store ``episode`` (atomically, see the module docstring) and return its id."""
        if not isinstance(episode, Episode):
            raise TypeError(f"append expects an Episode, got {type(episode).__name__}")
        shape = tuple(episode.frames.shape[1:])
        if self.frame_shape is not None and shape != self.frame_shape:
            raise UserError(f"episode frames are {shape}, but the dataset at {self.root} holds {self.frame_shape}")
        i = len(self)
        name = f"episodes/{i:06d}.npz"
        (self.root / "episodes").mkdir(parents=True, exist_ok=True)
        save = np.savez_compressed if self.compress else np.savez
        write_atomic(self.root / name, lambda f: save(f, **episode.arrays()))
        self.frame_shape = shape
        self._files.append(name)
        self._lengths.append(len(episode))
        self._returns.append(episode.episode_return)
        self._fingerprints.append(episode.fingerprint())
        self._write_index()
        self._remember(i, episode)
        return i

    def _write_index(self) -> None:
        index = {
            "format": FORMAT_VERSION,
            "game": self.game,
            "frame_shape": list(self.frame_shape) if self.frame_shape else None,
            **({"action_meanings": self.action_meanings} if self.action_meanings is not None else {}),
            "num_steps": self.num_steps,
            "episodes": [{"file": f, "length": n, "return": r, **({"fingerprint": p} if p else {})}
                         for f, n, r, p in zip(self._files, self._lengths, self._returns, self._fingerprints,
                                               strict=True)],
        }
        data = json.dumps(index, indent=1).encode()
        write_atomic(self.root / "index.json", lambda f: f.write(data))

    def truncate(self, num_episodes: int) -> int:
        """Forget the episodes after the first ``num_episodes`` (and delete their files): a resumed run
        drops what it collected after its last saved state, which it collects again. Returns how many."""
        if not 0 <= num_episodes <= len(self):
            raise UserError(f"num_episodes must be in [0, {len(self)}], got {num_episodes}")
        dropped = self._files[num_episodes:]
        del self._files[num_episodes:], self._lengths[num_episodes:], self._returns[num_episodes:]
        del self._fingerprints[num_episodes:]
        self._forget(range(num_episodes, num_episodes + len(dropped)))
        if dropped:
            self._write_index()  # first the index, so a kill here leaves no listed file missing
            for name in dropped:
                (self.root / name).unlink(missing_ok=True)
        return len(dropped)

    def _forget(self, ids: range) -> None:
        """Drop what is cached of episodes ``ids`` (consecutive, to the end): copies, termination flags, rewards."""
        del self._ends[ids.start:]
        del self._rewarded[ids.start:]
        for i in ids:
            old = self._cache.pop(i, None)
            if old is not None:
                self._cached_bytes -= sum(a.nbytes for a in old.arrays().values())

    def _recover(self) -> None:
        """Add complete episode files that a run stopped before listing in the index."""
        recovered = False
        while (self.root / f"episodes/{len(self):06d}.npz").exists():
            i = len(self)
            name = f"episodes/{i:06d}.npz"
            try:
                episode = self._load(name)
            except (OSError, ValueError, TypeError, KeyError):
                break  # not a complete episode: the next append overwrites it
            if self.frame_shape is not None and tuple(episode.frames.shape[1:]) != self.frame_shape:
                break
            self.frame_shape = tuple(episode.frames.shape[1:])
            self._files.append(name)
            self._lengths.append(len(episode))
            self._returns.append(episode.episode_return)
            self._fingerprints.append(episode.fingerprint())
            recovered = True
        if recovered:
            self._write_index()

    # ------------------------------------------------------------------ reading
    def _load(self, name: str) -> Episode:
        with np.load(self.root / name, allow_pickle=False) as data:
            return Episode(**{key: data[key] for key in _DTYPES})

    def _remember(self, i: int, episode: Episode) -> None:
        size = sum(a.nbytes for a in episode.arrays().values())
        if size > self.cache_bytes:
            return
        self._cache[i] = episode
        self._cached_bytes += size
        while self._cached_bytes > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached_bytes -= sum(a.nbytes for a in old.arrays().values())

    def episode(self, i: int) -> Episode:
        """Episode ``i`` (0 is the oldest), loaded from disk the first time and then cached."""
        n = len(self)
        if not isinstance(i, (int, np.integer)) or not -n <= i < n:
            raise IndexError(f"episode id must be an int in [0, {n}), got {i!r}")
        i = int(i) % n
        if i in self._cache:
            self._cache.move_to_end(i)
            return self._cache[i]
        episode = self._load(self._files[i])
        if len(episode) != self._lengths[i]:
            raise UserError(f"{self.root / self._files[i]} holds {len(episode)} transitions, the index says "
                            f"{self._lengths[i]}")
        self._remember(i, episode)
        return episode

    def split(self, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Deterministic (train_ids, test_ids), sorted int64 arrays, for held-out evaluation.

        Whether an episode is a test episode depends only on (seed, its id), so the split stays the
        same for old episodes as the dataset grows; about ``test_fraction`` of them are. If that leaves
        no test episode while there are at least 2 episodes, the one with the smallest draw is.
        """
        if not 0 <= test_fraction < 1:
            raise UserError(f"test_fraction must be in [0, 1), got {test_fraction}")
        ids = np.arange(len(self), dtype=np.int64)
        draws = _splitmix64(_splitmix64(np.uint64(seed & (2**64 - 1))) ^ ids.astype(np.uint64))
        u = (draws >> np.uint64(11)).astype(np.float64) / 2.0**53
        test = u < test_fraction
        if test_fraction > 0 and not test.any() and len(ids) >= 2:
            test[np.argmin(u)] = True
        return ids[~test], ids[test]

    def _read_event_labels(self) -> None:
        """Whether each episode not read yet terminated, and its rewarded steps: its two small label arrays,
        read in one opening of its file (the oversampling of terminations and of rewards both need them)."""
        for i in range(len(self._ends), len(self)):
            with np.load(self.root / self._files[i], allow_pickle=False) as data:
                self._ends.append(bool(data["terminated"][-1]))
                self._rewarded.append(np.flatnonzero(data["rewards"]))

    def terminated_episodes(self, episode_ids: np.ndarray | None = None) -> np.ndarray:
        """The ids (of ``episode_ids``, default all) whose last transition is a termination.

        Reads only each file's small label arrays, once per episode (``_read_event_labels``).
        """
        self._read_event_labels()
        ids = np.arange(len(self)) if episode_ids is None else np.sort(np.asarray(episode_ids, dtype=np.int64))
        return ids[np.asarray(self._ends, dtype=bool)[ids]] if ids.size else ids

    def rewarded_steps(self, episode_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The rewarded transitions (nonzero reward) of ``episode_ids`` (default all): (episode ids, steps).

        Reads only each file's small label arrays, once per episode (``_read_event_labels``).
        """
        self._read_event_labels()
        ids = np.arange(len(self)) if episode_ids is None else np.sort(np.asarray(episode_ids, dtype=np.int64))
        steps = [self._rewarded[i] for i in ids]
        episodes = np.repeat(ids, [len(s) for s in steps]) if ids.size else ids
        return episodes.astype(np.int64), (np.concatenate(steps) if steps else np.zeros(0)).astype(np.int64)

    def get_segments(self, episode_ids: np.ndarray, starts: np.ndarray, num_steps: int, *,
                     pad_unterminated_end: bool = False) -> Segment:
        """Segments of ``num_steps`` transitions of ``episode_ids[b]`` from transition ``starts[b]``.

        ``starts`` may be negative or run past the end; what lies outside the episode is zero with
        ``mask`` and ``frame_mask`` False (see ``Segment``). With ``pad_unterminated_end`` the frame
        after the last action of an episode that did not terminate is padding too: DIAMOND stores that
        frame only for terminated episodes, and trains its reward/termination model on padding there.
        """
        episode_ids = np.asarray(episode_ids, dtype=np.int64).reshape(-1)
        starts = np.asarray(starts, dtype=np.int64).reshape(-1)
        if episode_ids.shape != starts.shape:
            raise UserError(f"episode_ids and starts must have the same length, got {episode_ids.shape} "
                            f"and {starts.shape}")
        if len(self) == 0 or self.frame_shape is None:
            raise UserError(f"the dataset at {self.root} has no episodes")
        B, S = len(episode_ids), int(num_steps)
        frames = np.empty((B, S + 1, *self.frame_shape), dtype=np.uint8)
        out = {name: np.empty((B, S), dtype=dtype) for name, dtype in _DTYPES.items() if name != "frames"}
        frame_idx = starts[:, None] + np.arange(S + 1)  # (B, S+1)
        step_idx = frame_idx[:, :-1]  # (B, S)
        lengths = self.lengths[episode_ids][:, None]
        frame_ok = (frame_idx >= 0) & (frame_idx <= lengths)
        if pad_unterminated_end:
            ended = np.isin(episode_ids, self.terminated_episodes(np.unique(episode_ids)))[:, None]
            frame_ok &= (frame_idx < lengths) | ended
        mask = (step_idx >= 0) & (step_idx < lengths)
        for e in np.unique(episode_ids):
            rows = np.flatnonzero(episode_ids == e)
            episode = self.episode(int(e))
            T = len(episode)
            frames[rows] = episode.frames[np.clip(frame_idx[rows], 0, T)]
            steps = np.clip(step_idx[rows], 0, T - 1)
            for name in out:
                out[name][rows] = getattr(episode, name)[steps]
        frames[~frame_ok] = 0
        for array in out.values():
            array[~mask] = 0
        return Segment(frames=frames, mask=mask, frame_mask=frame_ok, episode_ids=episode_ids, starts=starts, **out)


def environment_actions(dataset: EpisodeDataset) -> tuple[str, list[str]]:
    """The name a world model of ``dataset`` carries and its action names: an Atari game's (from ale-py), or the
    Gymnasium id the episodes were recorded in with the action names the dataset stores."""
    if dataset.game is None:
        raise UserError(f"the dataset at {dataset.root} does not say which game or environment it holds: name it "
                        f"(--game)")
    atari = atari_game_name(dataset.game)
    if dataset.action_meanings is not None:
        return (atari or dataset.game), list(dataset.action_meanings)
    if atari is None:
        from gym_diamond.atari import game_to_name

        try:
            game_to_name(dataset.game)  # the Atari lookup's error suggests close names
        except ValueError as e:
            raise UserError(f"{e}; and the dataset at {dataset.root} records no action names, as one collected "
                            f"from another environment does (python -m training.data.collect --env-id ID)") from None
    from gym_diamond.atari import game_action_meanings

    return atari, game_action_meanings(atari)
