"""What every ``python -m training.*`` command does with a user's mistake: one line on stderr, exit status 2.

A wrong game name, a missing file or a folder another run is writing to is the user's to fix, and a Python
traceback hides the one line that says how. ``user_errors`` wraps a command's ``main`` so that such errors
print ``error: <message>`` and exit 2, as argparse does for a malformed argument. Bugs (any other exception)
still show their traceback, and ``GYM_DIAMOND_TRACEBACK=1`` shows it for user errors too.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

from training.files import FolderInUseError

__all__ = ["USER_ERRORS", "user_errors"]

# ModuleNotFoundError: an optional extra not installed (the message says which pip install brings it)
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
                                                ModuleNotFoundError, FolderInUseError)
Main = TypeVar("Main", bound=Callable[..., None])


def user_errors(main: Main) -> Main:
    """``main`` with the user's errors (``USER_ERRORS``) turned into one line on stderr and exit status 2."""

    @functools.wraps(main)
    def command(*args, **kwargs) -> None:
        try:
            return main(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("GYM_DIAMOND_TRACEBACK"):
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None

    return command  # type: ignore[return-value]
