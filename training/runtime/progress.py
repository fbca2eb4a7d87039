"""Progress bars that suit where they are written: tqdm's bar on a terminal, a plain line now and then elsewhere.

A bar redrawn with carriage returns is what a terminal wants; in a log file or a pipe it is thousands of
``\\r``-joined copies on one line. Off a terminal, ``progress_bar`` writes one ordinary line per
``LOG_INTERVAL`` seconds instead (and the last), through the same tqdm object, so callers need not care.
"""

from __future__ import annotations

import re
import sys
from typing import Any, TextIO

from tqdm import tqdm

__all__ = ["LOG_INTERVAL", "progress_bar"]

LOG_INTERVAL = 60.0  # seconds between the lines written off a terminal
_CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # tqdm's moves between nested bars' rows


class _Lines:
    """A stream for tqdm that turns each redraw into one line (carriage returns, the cursor moves of nested
    bars and blank redraws dropped)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = _CURSOR_MOVES.sub("", text.replace("\r", "")).strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(*args: Any, file: TextIO | None = None, **kwargs: Any) -> tqdm:
    """``tqdm(*args, **kwargs)`` on a terminal; off one, a plain line every ``LOG_INTERVAL`` seconds, and the
    last line of every bar kept (a bar that vanishes when done on a terminal still leaves its total in a log)."""
    stream = file if file is not None else sys.stderr
    if stream.isatty():
        return tqdm(*args, file=stream, **kwargs)
    kwargs.setdefault("mininterval", LOG_INTERVAL)
    kwargs.setdefault("maxinterval", LOG_INTERVAL * 10)
    kwargs["leave"] = True
    return tqdm(*args, file=_Lines(stream), ascii=True, **kwargs)
