"""Run ``python -m MODULE ARGS`` in this process and SIGKILL it at a chosen file write (a test helper).

Every file gym-diamond writes goes through a temp file and ``os.replace`` (``training.runtime.files``). With
``KILL_AT=n`` the n-th ``os.replace`` of the run kills the process: ``KILL_MODE=mid-write`` first cuts
the temp file to half (death while writing), ``before-rename`` leaves it whole but unrenamed,
``after-rename`` renames it and dies before the next write (e.g. an episode file the index does not
list yet). Without ``KILL_AT`` the module just runs.

    python tests/kill_driver.py training.data.collect --game Pong --out DIR --steps 400
"""

import os
import runpy
import signal
import sys

_replace = os.replace
_count = 0


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _replace_then_maybe_die(src, dst, *args, **kwargs):
    global _count
    _count += 1
    if _count == int(os.environ["KILL_AT"]):
        mode = os.environ["KILL_MODE"]
        if mode == "mid-write":
            with open(src, "r+b") as f:
                f.truncate(os.path.getsize(src) // 2)
            _die()
        if mode == "before-rename":
            _die()
        _replace(src, dst, *args, **kwargs)
        _die()
    return _replace(src, dst, *args, **kwargs)


if __name__ == "__main__":
    if "KILL_AT" in os.environ:
        os.replace = _replace_then_maybe_die
    module, *sys.argv[1:] = sys.argv[1:]
    sys.argv[0] = module
    runpy.run_module(module, run_name="__main__", alter_sys=True)
