"""gym_diamond.cpu_memory: freed CPU memory is reused instead of faulted in anew every step."""

import json
import os
import subprocess
import sys

import pytest

from gym_diamond import WorldModel, tiny_world_model_config

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")

# glibc's own books on where a 64 MB tensor's memory comes from and where it goes when freed. Page-fault
# counts would say the same only on a quiet kernel: automatic NUMA balancing unmaps pages it samples,
# and touching them again counts as minor faults (192 MB of them in one 10-touch run on a CI machine).
HEAP_OF_A_FREED_TENSOR = """
import ctypes, ctypes.util, json, resource, torch
from gym_diamond.cpu_memory import keep_freed_memory
applied = keep_freed_memory()
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
wide = hasattr(libc, "mallinfo2")  # glibc >= 2.33; mallinfo's int fields suffice below 2 GB
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t if wide else ctypes.c_int) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                 "fordblks", "keepcost")]
info = libc.mallinfo2 if wide else libc.mallinfo
info.restype = Info

def touch():  # a 64 MB tensor, written, then freed: like a big activation in a U-Net step
    torch.empty(64 << 20, dtype=torch.uint8).fill_(1)

for _ in range(10):  # the heap settles
    touch()
settled = info()
alive = torch.empty(64 << 20, dtype=torch.uint8).fill_(1)
while_alive = info()
del alive
freed = info()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    touch()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"applied": applied, "faults": faults, "heap_growth": while_alive.arena - settled.arena,
                  "mapped_while_alive": while_alive.hblkhd - settled.hblkhd,
                  "kept_after_free": freed.fordblks}))
"""
BLOCK = 64 << 20


def heap_of_a_freed_tensor(**env: str) -> dict:
    out = subprocess.run([sys.executable, "-c", HEAP_OF_A_FREED_TENSOR], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout
    return json.loads(out)


def test_freed_memory_is_reused_unless_opted_out():
    kept = heap_of_a_freed_tensor()
    system = heap_of_a_freed_tensor(GYM_DIAMOND_MALLOC="system")
    assert (kept["applied"], system["applied"]) == (True, False)
    # glibc's default: the block is mapped for itself, unmapped when freed, faulted in anew next time
    assert system["mapped_while_alive"] >= BLOCK and system["kept_after_free"] < BLOCK
    assert system["faults"] > 0.9 * 10 * BLOCK // os.sysconf("SC_PAGE_SIZE")
    # kept: served from the heap the earlier blocks left, which neither grows nor gives it back
    assert kept["mapped_while_alive"] < BLOCK and kept["heap_growth"] < BLOCK
    assert kept["kept_after_free"] >= BLOCK


def test_cpu_dreams_turn_it_on_once(monkeypatch):
    from gym_diamond import cpu_memory

    calls = []
    monkeypatch.setattr(cpu_memory, "_state", None)
    monkeypatch.setattr(cpu_memory, "_apply", lambda: calls.append(1) or True)
    model = WorldModel(tiny_world_model_config(num_actions=3))
    model.accelerate()
    model.accelerate()
    assert calls == [1] and cpu_memory.keep_freed_memory()
