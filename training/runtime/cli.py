"""What every ``python -m training.*`` command does with a user's mistake: one line on stderr, exit status 2.

A wrong game name, a missing file or a folder another run is writing to is the user's to fix, and a Python
traceback hides the one line that says how. ``user_errors`` wraps a command's ``main`` so that such errors
print ``error: <message>`` and exit 2, as argparse does for a malformed argument. Bugs (any other exception)
still show their traceback, and ``GYM_DIAMOND_TRACEBACK=1`` shows it for user errors too.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from gym_diamond.acceleration import PRECISIONS
from gym_diamond.errors import UserError
from training.runtime.run_folder import FolderInUseError

__all__ = ["USER_ERRORS", "UserError", "add_algo_kwargs_argument", "json_object", "user_errors"]

# UserError: what our code refuses, saying why; a plain ValueError (raised inside numpy, torch...) is a bug and
# keeps its traceback. ModuleNotFoundError: an optional extra not installed (the message says which pip install
# brings it)
USER_ERRORS: tuple[type[BaseException], ...] = (UserError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
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


def add_speed_arguments(parser: argparse.ArgumentParser) -> None:
    """--precision and --compile, shared by the training commands (benchmarks/README.md has their speed)."""
    parser.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="autocast of the networks. Default: fp32, as DIAMOND trains and dreams (bf16-trained "
                             "light Pong dreams exploded in A/B runs, benchmarks/README.md)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the networks (minutes to compile first, faster after)")


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type``: a JSON object (``--algo-kwargs '{"n_steps": 128}'``), or argparse's one-line error."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"n_steps\": 128}}', got {text!r}")
    return value


def add_algo_kwargs_argument(parser: argparse.ArgumentParser, algorithm: str = "SB3") -> None:
    """``--algo-kwargs``, the same in every command that builds an SB3 algorithm: a JSON object, checked."""
    parser.add_argument("--algo-kwargs", type=json_object, default={},
                        help=f'JSON object for the {algorithm} constructor, e.g. \'{{"n_steps": 128}}\'')


def add_preset_override_argument(parser: argparse.ArgumentParser) -> None:
    """``--set FIELD=VALUE`` (repeatable), the same in every command that takes a pipeline preset."""
    parser.add_argument("--set", dest="preset_overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="set one field of the preset, e.g. --set actor_critic_steps_per_epoch=150 or --set "
                             "imagination.horizon=30 (repeatable; a resumed run takes the same)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``, the same in every command: CUDA when this machine has it, else the CPU."""
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available, else cpu)")


def import_object(spec: str) -> Any:
    """``MODULE:NAME`` -> the object (a wrapper class named on a command line)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise UserError(f"expected MODULE:NAME, e.g. minigrid.wrappers:RGBImgObsWrapper, got {spec!r}")
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise UserError(f"cannot import {module!r} for {spec!r}: {e}") from None
    if not hasattr(found, name):
        raise UserError(f"{module} has no {name!r}")
    return getattr(found, name)
