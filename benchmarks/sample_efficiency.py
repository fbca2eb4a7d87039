"""Fidelity per update and per CPU hour: the sample-efficiency study's table and curves from world-model runs.

    python benchmarks/sample_efficiency.py runs/diamond runs/cpu --out study.png

Each RUN is a ``python -m training.world_model --fidelity-every N`` folder (its ``fidelity.csv``: the held-out
figures every N updates, with the updates' CPU hours). Prints a Markdown table, one row per run: the updates
and CPU hours at which the dream first passes the object gate's test for the ball at 1 and at 5 steps ahead
(``training.gates.judge_objects``: the ball shown in 90% of the real frames that show one, and within 2 pixels
of the real one more often than repeat-last), and the figures of its last row; ``--out`` draws the curves against
updates, against training samples (updates times the run's batch size, from its ``config.json``) and against CPU
hours side by side (matplotlib, the ``plot`` extra), so runs of different batch sizes compare at equal samples.
CPU hours compare only between runs on one machine.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from training.fidelity.measures import FIDELITY_HORIZONS
from training.gates import judge_objects

HORIZONS = (1, 5)
LAST_ROW = ("h1_pooled_psnr_model", "h5_pooled_psnr_model", "h15_pooled_psnr_model", "h1_ball_within_2px_model",
            "h5_ball_within_2px_model", "h15_ball_within_2px_model", "h1_ball_shown_model", "h5_ball_shown_model",
            "h15_ball_shown_model", "sigma5_ball_within_2px")


def read_rows(run: Path) -> list[dict[str, float]]:
    """``run/fidelity.csv``, numbers as floats (blank cells left out), oldest update first."""
    path = run / "fidelity.csv"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found: pass folders of training.world_model runs with --fidelity-every")
    with path.open(newline="") as f:
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(f)]
    batch = batch_size(run)
    if batch is not None:
        for row in rows:
            row["samples"] = row["update"] * batch
    return sorted(rows, key=lambda row: row["update"])


def batch_size(run: Path) -> int | None:
    """The denoiser's batch size from ``run/config.json`` (None for a run without one)."""
    path = run / "config.json"
    if not path.is_file():
        return None
    batch = json.loads(path.read_text()).get("denoiser", {}).get("batch_size")
    return None if batch is None else int(batch)


def first_passing(rows: list[dict[str, float]], horizon: int) -> dict[str, float] | None:
    """The first row whose figures at ``horizon`` steps pass the object gate's test for the ball."""
    prefix = f"h{horizon}_"
    for row in rows:
        line = {key[len(prefix):]: value for key, value in row.items() if key.startswith(prefix)}
        if {"ball_real", "ball_shown_model", "ball_within_2px_model", "ball_within_2px_repeat_last"} <= set(line) \
                and judge_objects({horizon: line})["passed"]:
            return row
    return None


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    """The study's Markdown table: when each run first matched repeat-last, and where it ended."""
    header = ["run", "samples an update"]
    header += [f"ball gate passed at {h} step{'s' * (h > 1)}: updates / CPU h" for h in HORIZONS]
    header += ["last row: updates / CPU h", "PSNR 1 / 5 / 15 (repeat-last)", "ball within 2 px 1 / 5 / 15",
               "ball shown 1 / 5 / 15", "ball at sigma 5"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, rows in runs.items():
        cells = [name, f"{rows[0]['samples'] / rows[0]['update']:.0f}" if "samples" in rows[0] else "?"]
        for horizon in HORIZONS:
            row = first_passing(rows, horizon)
            cells.append("not yet" if row is None else f"{row['update']:,.0f} / {row.get('train_cpu_hours', 0):.2f}")
        last = rows[-1]

        def get(key: str, last: dict[str, float] = last) -> float:
            return last.get(key, float("nan"))

        cells.append(f"{last['update']:,.0f} / {get('train_cpu_hours'):.2f}")
        def across(template: str) -> str:
            return " / ".join(f"{get(template.format(h=h)):.2f}" for h in FIDELITY_HORIZONS)

        cells.append(f"{across('h{h}_pooled_psnr_model')} ({across('h{h}_pooled_psnr_repeat_last')})")
        cells.append(across("h{h}_ball_within_2px_model"))
        cells.append(across("h{h}_ball_shown_model"))
        cells.append(f"{get('sigma5_ball_within_2px'):.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def draw(runs: dict[str, list[dict[str, float]]], out: Path) -> None:
    """Ball within 2 px at 1 and 5 steps and PSNR at 5 steps, against updates, training samples and CPU hours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    figures = [("h1_ball_within_2px", "ball within 2 px, 1 step ahead"),
               ("h5_ball_within_2px", "ball within 2 px, 5 steps ahead"),
               ("h5_pooled_psnr", "pooled PSNR 5 steps ahead (dB)")]
    axes_x = (("update", "updates"), ("samples", "training samples (updates x batch)"),
              ("train_cpu_hours", "CPU hours of updates"))
    fig, axes = plt.subplots(len(figures), len(axes_x), figsize=(15, 3.2 * len(figures)), squeeze=False)
    for row_axes, (key, title) in zip(axes, figures, strict=True):
        for column, (x, label) in enumerate(axes_x):
            ax = row_axes[column]
            for name, rows in runs.items():
                points = [(r[x], r[f"{key}_model"]) for r in rows if x in r and f"{key}_model" in r]
                if points:
                    ax.plot(*zip(*points, strict=True), marker=".", label=name)
            baseline = [r.get(f"{key}_repeat_last") for r in next(iter(runs.values()))]
            if baseline and baseline[-1] is not None:
                ax.axhline(baseline[-1], color="grey", linestyle="--", linewidth=1, label="repeat-last")
            ax.set_title(title, fontsize=10)
            ax.set_xlabel(label)
            if x == "samples":
                ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value / 1000:,.0f}k"))
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The sample-efficiency study's table (and curves) from world-model "
                                                 "runs' fidelity.csv")
    parser.add_argument("runs", nargs="+", type=Path, help="training.world_model run folders")
    parser.add_argument("--out", type=Path, default=None, help="PNG of the curves (needs matplotlib)")
    args = parser.parse_args(argv)
    runs = {run.name: read_rows(run) for run in args.runs}
    empty = [name for name, rows in runs.items() if not rows]
    if empty:
        raise SystemExit(f"error: no fidelity rows yet in {', '.join(empty)}")
    print(table(runs))
    if args.out is not None:
        draw(runs, args.out)
        print(f"curves: {args.out}")


if __name__ == "__main__":
    main()
