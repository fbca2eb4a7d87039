"""Whole-or-absent JSON files (``gym_diamond.atomic``); a run folder's other rules live in
``training.runtime.run_folder``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gym_diamond.atomic import write_atomic


def write_json_atomic(path: Path, data: Any) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    text = json.dumps(data, indent=2).encode()
    write_atomic(path, lambda f: f.write(text))
