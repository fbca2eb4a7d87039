"""What the tensor digest costs when loading: a paper-size checkpoint loaded with and without verification.

    python benchmarks/checkpoint_load.py [--bank 1000] [--repeats 5]

Prints one JSON line: file size, median load seconds verified and unverified (alternating runs), and
the difference (sha256 over every tensor plus the finiteness check; ``gym_diamond.integrity``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gym_diamond import StartBank, WorldModel, load_checkpoint, save_checkpoint
from gym_diamond.config import WorldModelConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank", type=int, default=1000, help="start contexts in the file")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = WorldModel(WorldModelConfig(num_actions=6))
    rng = np.random.default_rng(0)
    bank = StartBank(rng.integers(0, 256, (args.bank, 4, 64, 64, 3), dtype=np.uint8),
                     rng.integers(0, 6, (args.bank, 4)))
    with tempfile.TemporaryDirectory() as folder:
        path = save_checkpoint(Path(folder) / "paper.safetensors", model, game="Pong", start_bank=bank,
                               action_meanings=["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"])
        times: dict[bool, list[float]] = {True: [], False: []}
        load_checkpoint(path)  # warm the page cache and the allocator
        for _ in range(args.repeats):
            for verify in (True, False):
                t0 = time.perf_counter()
                load_checkpoint(path, verify=verify)
                times[verify].append(time.perf_counter() - t0)
        verified, unverified = statistics.median(times[True]), statistics.median(times[False])
        print(json.dumps({"file_mb": round(path.stat().st_size / 2**20, 1), "bank_contexts": args.bank,
                          "load_s_verified": round(verified, 4), "load_s_unverified": round(unverified, 4),
                          "digest_cost_s": round(verified - unverified, 4),
                          "digest_cost_fraction": round(verified / unverified - 1, 3)}))


if __name__ == "__main__":
    main()
