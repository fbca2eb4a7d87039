"""A run's folder and its rules, in one place for every trainer (the pipeline, the world model, the actor-critic,
SB3): one writer at a time (``FolderLock``), one run per folder (``guard_run_settings``: its settings recorded on the
first start, a resume with others refused), its CSV logs (rows a killed run wrote after its last save dropped) and
its progress bar.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tqdm import tqdm

from gym_diamond.errors import UserError
from training.runtime.csv_log import CsvLog
from training.runtime.files import write_json_atomic
from training.runtime.progress import progress_bar

__all__ = ["LOCK_NAME", "RUN_CONFIG", "FolderInUseError", "FolderLock", "RunFolder", "RunSettingsError",
           "guard_run_settings", "read_run_settings"]

# ---------------------------------------------------------------------------------------------- one writer
LOCK_NAME = ".lock"


class FolderInUseError(RuntimeError):
    """Another process writes to the folder (a second run of the same command, most likely)."""


_held: dict[str, list[Any]] = {}  # folder -> [open lock file, holders in this process]


class FolderLock:
    """An exclusive lock on a dataset or run folder, so a second writer fails at once instead of silently
    losing one run's episodes or checkpoints to the other.

    The lock is ``flock`` on ``<folder>/.lock``, which holds the owner's pid for the error message. The
    kernel drops it when its process ends, however it ends (SIGKILL included), so a killed run never
    leaves a stale lock behind; a rerun resumes. Within one process the lock is re-entrant (a pipeline
    and the dataset inside its folder, a test that resumes a run in-process). A no-op where ``fcntl``
    does not exist (Windows).
    """

    def __init__(self, folder: str | os.PathLike[str], what: str = "run") -> None:
        self.folder, self.what = Path(folder), what
        self._key: str | None = None

    def acquire(self) -> FolderLock:
        """Take the lock (creating the folder); raises FolderInUseError naming the holder's pid."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return self
        if self._key is not None:
            return self
        self.folder.mkdir(parents=True, exist_ok=True)
        key = os.path.realpath(self.folder)
        if key in _held:
            _held[key][1] += 1
        else:
            handle = open(self.folder / LOCK_NAME, "a+")  # noqa: SIM115 - held open while the lock is held
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                handle.close()
                raise FolderInUseError(f"{self.folder} is in use by another {self.what} (pid {holder}): wait for it "
                                       f"to end, or use another folder") from None
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            _held[key] = [handle, 1]
        self._key = key
        return self

    def release(self) -> None:
        """Give the lock up (the last holder in this process unlocks the folder)."""
        if self._key is None:
            return
        entry = _held[self._key]
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()  # closing the file drops the flock
            del _held[self._key]
        self._key = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---------------------------------------------------------------------------------------- one run a folder
RUN_CONFIG = "config.json"


class RunSettingsError(UserError):
    """A run folder that holds a run with other settings: resuming it would train another run than the one named."""


def guard_run_settings(folder: Path, settings: dict[str, Any], *, may_grow: tuple[str, ...] = (),
                       phase: str | None = None) -> None:
    """Record a run's ``settings`` in ``folder/config.json`` the first time; on a resume, refuse other settings.

    ``settings`` is JSON-ready (tuples become lists). ``may_grow`` names totals a resumed run may raise (a later
    ``--steps``). The refusal names every setting that differs, so the user knows which argument to repeat.
    ``phase`` names one phase of a run whose phases train with settings of their own (the world model's networks
    trained together, then one fine-tuned alone): the file keeps each phase's settings under its name, and a
    resume is held to its own phase's.
    """
    settings = json.loads(json.dumps(settings))
    recorded = read_run_settings(folder)
    saved = recorded if phase is None else (recorded or {}).get(phase)
    if saved is not None:
        differs = sorted(k for k in set(saved) | set(settings) if k not in may_grow and saved.get(k) != settings.get(k))
        if differs:
            values = "; ".join(f"{k}: {json.dumps(saved.get(k))} there, {json.dumps(settings.get(k))} now"
                               for k in differs)
            where = f"{folder}" if phase is None else f"{folder} ({phase} phase)"
            raise RunSettingsError(f"{where} holds a run with other settings ({', '.join(differs)}): {values}; use "
                                   f"another --out or the same arguments")
    write_json_atomic(Path(folder) / RUN_CONFIG, settings if phase is None else {**(recorded or {}), phase: settings})


def read_run_settings(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The settings a run recorded in its folder (``config.json``), or None where it recorded none."""
    path = Path(folder) / RUN_CONFIG
    return json.loads(path.read_text()) if path.exists() else None


# ------------------------------------------------------------------------------------------------ the folder
class RunFolder:
    """A training run's folder: locked while the run writes it (``with RunFolder(...)``), its settings guarded,
    its logs and progress bar made here so that every trainer resumes the same way.

    ``writer=False`` (the other ranks of a data-parallel run) neither locks nor rewrites anything; they read.
    """

    def __init__(self, path: str | os.PathLike[str], what: str, *, writer: bool = True) -> None:
        self.path, self.what, self.writer = Path(path), what, writer
        self._lock = FolderLock(self.path, what)

    def __enter__(self) -> RunFolder:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> RunFolder:
        """Create the folder and, as its writer, lock it (FolderInUseError if another process holds it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.writer:
            self._lock.acquire()
        return self

    def close(self) -> None:
        """Give the lock up (the kernel also drops it when the process ends)."""
        self._lock.release()

    def file(self, name: str) -> Path:
        """A path in the folder."""
        return self.path / name

    def guard(self, settings: dict[str, Any], *, may_grow: tuple[str, ...] = (), phase: str | None = None) -> None:
        """Record the run's settings on its first start; refuse a resume with others (``guard_run_settings``)."""
        if self.writer:
            guard_run_settings(self.path, settings, may_grow=may_grow, phase=phase)

    def upgrade_settings(self, old_layout: dict[str, Any], settings: dict[str, Any]) -> None:
        """Where the folder recorded exactly ``old_layout`` (the same settings as an earlier gym-diamond wrote them),
        record ``settings`` instead, so that the run resumes under today's guard; any other record is left as it is."""
        if self.writer and self.saved_settings() == json.loads(json.dumps(old_layout)):
            write_json_atomic(self.path / RUN_CONFIG, settings)

    def saved_settings(self) -> dict[str, Any] | None:
        """The settings the run recorded (``config.json``), or None for a new folder."""
        return read_run_settings(self.path)

    def log(self, name: str, *, resume_at: int | None = None, key: str = "step") -> CsvLog:
        """The CSV log ``name``; with ``resume_at``, its rows past that ``key`` value (written by a killed run after
        its last save, redone on resume) are dropped first."""
        log = CsvLog(self.path / name)
        if resume_at is not None and self.writer:
            log.drop_after(resume_at, key=key)
        return log

    def progress_bar(self, *args: Any, enabled: bool = True, **kwargs: Any) -> tqdm:
        """The run's progress bar (``training.runtime.progress.progress_bar``), shown by the writer only."""
        return progress_bar(*args, disable=not (enabled and self.writer), **kwargs)
