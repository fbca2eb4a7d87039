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

__all__ = ["InterruptRequest", "deferred_interrupt", "terminate_as_interrupt"]


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


class InterruptRequest:
    """Whether a stop was asked for inside ``deferred_interrupt()``, and by which signal."""

    def __init__(self) -> None:
        self.signal: str | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def raise_if_requested(self) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt(f"stopped by signal {self.signal}")


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[InterruptRequest]:
    """Within the block, Ctrl-C or SIGTERM only asks to stop: a loop finishes its update, saves, and then calls
    ``raise_if_requested()``, so the saved state is never one update half applied. A second signal raises at
    once. Outside the main thread nothing changes (and nothing is ever requested)."""
    request = InterruptRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def ask(signum: int, frame: object) -> None:
        if request.requested:
            _interrupt(signum, frame)
        request.signal = signal.Signals(signum).name

    previous = {signum: signal.signal(signum, ask) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
