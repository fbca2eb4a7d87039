"""gym_diamond.cpu_memory: freed CPU memory is reused instead of faulted in anew every step."""

import os
import subprocess
import sys

import pytest

from gym_diamond import WorldModel, tiny_world_model_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

PAGE_FAULTS_OF_REPEATED_ALLOCATIONS = """
import resource, sys, torch
from gym_diamond.cpu_memory import keep_freed_memory
print(keep_freed_memory())

def touch():  # a 64 MB tensor, written, then freed: like a big activation in a U-Net step
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)

for _ in range(10):  # the heap settles
    touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(**env: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PAGE_FAULTS_OF_REPEATED_ALLOCATIONS], capture_output=True,
                         text=True, check=True, env={**os.environ, **env}).stdout.split()
    return out[0], int(out[1])


def test_freed_memory_is_reused_unless_opted_out():
    applied, kept = page_faults()
    opted_out, system = page_faults(GYM_DIAMOND_MALLOC="system")
    pages = 10 * (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert (applied, opted_out) == ("True", "False")
    assert system > 0.9 * pages  # glibc's default: every 64 MB block comes back as fresh pages
    assert kept < 0.01 * pages  # kept: the same memory, no faults


def test_cpu_dreams_turn_it_on_once(monkeypatch):
    from gym_diamond import cpu_memory

    calls = []
    monkeypatch.setattr(cpu_memory, "_state", None)
    monkeypatch.setattr(cpu_memory, "_apply", lambda: calls.append(1) or True)
    model = WorldModel(tiny_world_model_config(num_actions=3))
    model.accelerate()
    model.accelerate()
    assert calls == [1] and cpu_memory.keep_freed_memory()
