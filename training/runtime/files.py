"""Run folders' files: whole or absent (``gym_diamond.atomic``), one writer per folder (``FolderLock``), and one run
per folder (``guard_run_settings``: a resume with other settings is refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gym_diamond.atomic import write_atomic
from gym_diamond.errors import UserError


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    text = json.dumps(data, indent=2).encode()
    write_atomic(path, lambda f: f.write(text))


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


def guard_run_settings(folder: Path, settings: dict[str, Any], *, may_grow: tuple[str, ...] = ()) -> None:
    """Record a run's ``settings`` in ``folder/config.json`` the first time; on a resume, refuse other settings.

    ``settings`` is JSON-ready (tuples become lists). ``may_grow`` names totals a resumed run may raise (a later
    ``--steps``). The refusal names every setting that differs, so the user knows which argument to repeat.
    """
    path = Path(folder) / RUN_CONFIG
    settings = json.loads(json.dumps(settings))
    if path.exists():
        saved = json.loads(path.read_text())
        differs = sorted(k for k in set(saved) | set(settings) if k not in may_grow and saved.get(k) != settings.get(k))
        if differs:
            raise RunSettingsError(f"{folder} holds a run with other settings ({', '.join(differs)}); use another "
                                   f"--out or the same arguments")
    write_json_atomic(path, settings)
