"""The one exception type for what a caller got wrong: a bad argument, a file that is not what it should be.

``UserError`` is a ``ValueError`` (code that catches ValueError keeps working). The command lines print it as
one line (``error: ...``, exit 2); any other exception, a ValueError raised inside numpy or torch included,
is a bug and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """What the caller asked for cannot be done as asked; the message says what was given and what was expected."""
