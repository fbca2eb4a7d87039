"""Files that are either whole or absent: write a temp file, flush it to disk, rename it into place.

A process killed at any instant then leaves the old file or the new one, never half of one (a leftover
``.tmp`` is ignored and overwritten by the next write). Checkpoints, datasets, logs and run states all
go through here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

__all__ = ["replace_atomic", "write_atomic"]


def write_atomic(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``write(file)`` into ``path.tmp``, fsync it, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def replace_atomic(path: Path, write_to: Callable[[Path], Any]) -> None:
    """For writers that take a file name (safetensors): ``write_to(path.tmp)``, then rename it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    write_to(tmp)
    os.replace(tmp, path)
