"""A polite stop for long runs: SIGTERM (``kill PID``, a batch scheduler's notice) ends a run as Ctrl-C does.

Python dies on SIGTERM without running ``finally`` blocks, so a training loop killed that way loses every
update since its last save. Inside ``terminate_as_interrupt()`` SIGTERM raises ``KeyboardInterrupt``
instead: the loop's ``finally`` saves its state, and the same command resumes from it. (A process started
in the background of a non-interactive shell ignores SIGINT, so SIGTERM is how one stops it.)
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

__all__ = ["terminate_as_interrupt"]


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt (in the main thread; elsewhere nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
