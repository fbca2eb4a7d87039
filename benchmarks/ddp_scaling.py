"""Data-parallel scaling of world-model training: N processes (torchrun) against one, same global batch.

    python benchmarks/ddp_scaling.py --nproc 2 --model light                     # CPU: 2 x 1 thread vs 1 x 2
    python benchmarks/ddp_scaling.py --nproc 8 --model paper --device cuda       # GPUs: 8 x 1 GPU vs 1 GPU

Each configuration runs ``python -m training.world_model`` (or ``torchrun --nproc_per_node N -m
training.world_model``) on the same random-frame dataset for ``--steps`` updates at the same global
batch, and reads the per-update wall time that the command logs every 10 updates (rank 0's, which
includes waiting for the all-reduce); the first logged row (warm-up) is dropped. On a CPU the threads
are split fairly: one process gets all ``--threads``, each of N processes ``threads / N``. The
speed-up is the ratio of updates/s at the same global batch; the efficiency is the speed-up over N
(1.0: N devices train N times as fast). One JSON line each.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from training_speed import random_dataset  # this folder's (run as a script from here)


def updates_per_second(run: Path) -> float:
    with (run / "losses.csv").open() as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f)][1:]
    return 1.0 / statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--model", default="light", help="world-model preset: tiny, light, small, paper")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads in all")
    args = parser.parse_args()
    if args.batch_size % args.nproc:
        parser.error(f"--nproc {args.nproc} must divide --batch-size {args.batch_size}")
    work = Path(tempfile.mkdtemp(prefix="ddp-scaling-"))
    random_dataset(6, length=300, root=str(work / "data"))
    results = {}
    for nproc in (1, args.nproc):
        threads = max(1, args.threads // nproc)
        out = work / f"run{nproc}"
        launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        command = [sys.executable, *launcher, "-m", "training.world_model", "--game", "Pong", "--data",
                   str(work / "data"), "--out", str(out), "--steps", str(args.steps), "--model", args.model,
                   "--batch-size", str(args.batch_size // nproc), "--device", args.device]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results[nproc] = updates_per_second(out)
        print(json.dumps({"what": "world-model updates/s", "config": args.model, "device": args.device,
                          "processes": nproc, "threads_per_process": threads if args.device == "cpu" else None,
                          "global_batch": args.batch_size, "updates_per_s": round(results[nproc], 3)}), flush=True)
    print(json.dumps({"what": "speed-up", "processes": args.nproc,
                      "speed_up": round(results[args.nproc] / results[1], 3),
                      "efficiency": round(results[args.nproc] / results[1] / args.nproc, 3)}), flush=True)


if __name__ == "__main__":
    main()
