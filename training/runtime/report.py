"""Draw a run folder's training curves to PNG files, so a run can be judged without a notebook.

    python -m training.runtime.report runs/Breakout-demo            # PNGs next to the CSVs
    python -m training.runtime.report runs/pong-wm --out plots/

Reads whichever logs the folder holds: a pipeline run's ``collect.csv``, ``world_model.csv``,
``actor_critic.csv`` and ``evaluate.csv`` (``python -m training.pipeline``), a world-model run's
``losses.csv`` (``python -m training.world_model``) or an SB3 agent run's ``eval.csv``
(``python -m training.agents.sb3``), and writes one PNG per log: ``collect.png``,
``world_model_losses.png``, ``actor_critic.png``, ``real_returns.png``. Needs matplotlib
(``pip install "gym-diamond[examples]"``), imported only when drawing.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gym_diamond.errors import UserError
from training.runtime.cli import user_errors

SMOOTH_FROM = 50  # rows from which a moving mean is drawn over the (then faint) raw curve
MARKERS_UP_TO = 30  # rows up to which points get markers (a single evaluation is otherwise invisible)


@dataclass(frozen=True)
class Panel:
    """One subplot: the columns drawn on it; ``std`` names the column of a ±std band around the first."""

    title: str
    columns: tuple[str, ...]
    log: bool = False  # log-scale y, applied only when every value is positive (some losses go negative)
    std: str | None = None
    legend: bool = False  # name even a lone curve (the title does not say which column it is)


@dataclass(frozen=True)
class Chart:
    """How to draw one CSV log: its x column (first one present wins) and its panels."""

    csv: str
    png: str
    title: str
    kind: str  # which training script writes the CSV, to tell the user what kind of run was found
    x: tuple[str, ...]
    panels: tuple[Panel, ...]
    rest: bool = False  # draw columns no panel names in an extra panel (scalars added after this was written)


CHARTS: tuple[Chart, ...] = (
    Chart("collect.csv", "collect.png", "real data collection", "pipeline", ("env_steps", "epoch"), (
        Panel("dataset size (steps)", ("dataset_steps",)),
        Panel("episodes in the dataset", ("episodes",)),
        Panel("return of the collected episodes", ("mean_return",)),
        Panel("collection speed (steps/s)", ("steps_per_second",)),
    )),
    Chart("world_model.csv", "world_model_losses.png", "world model", "pipeline", ("epoch",), (
        Panel("denoiser loss", ("denoiser_loss",), log=True),
        Panel("reward / termination losses", ("reward_loss", "end_loss"), log=True),
        Panel("gradient norms", ("denoiser_grad_norm", "rew_end_grad_norm"), log=True),
    )),
    Chart("losses.csv", "world_model_losses.png", "world model", "world model", ("step",), (
        Panel("denoiser loss", ("denoiser_loss",), log=True),
        Panel("reward / termination losses", ("reward_loss", "end_loss"), log=True),
        Panel("gradient norms", ("denoiser_grad_norm", "rew_end_grad_norm"), log=True),
    )),
    Chart("actor_critic.csv", "actor_critic.png", "actor-critic in imagination", "pipeline", ("epoch",), (
        Panel("actor-critic losses", ("total", "policy", "entropy")),
        Panel("value loss", ("value",), log=True),
        Panel("policy entropy (nats)", ("policy_entropy",)),
        Panel("imagined reward per step / end rate", ("imagined_reward_per_step", "imagined_end_rate")),
        Panel("mean advantage", ("advantage",)),
        Panel("gradient norm", ("ac_grad_norm",), log=True),
    ), rest=True),
    Chart("evaluate.csv", "real_returns.png", "real-game evaluation", "pipeline", ("env_steps", "epoch"), (
        Panel("mean real return (±std)", ("mean",), std="std"),
        Panel("human-normalized score", ("hns",)),
    )),
    Chart("eval.csv", "real_returns.png", "real-game evaluation", "SB3 agent", ("step",), (
        Panel("mean real return (±std)", ("mean_return",), std="std_return"),
        Panel("human-normalized score", ("hns",)),
        # apart, the agent exploits the dream
        Panel("reward signs per 1,000 steps: dream vs real game", ("dream_sign_rate", "sign_rate"), legend=True),
        Panel("CPU seconds", ("cpu_seconds",)),
    )),
)
LOG_NAMES = tuple(dict.fromkeys(chart.csv for chart in CHARTS))


def find_logs(run_dir: str | Path) -> list[Path]:
    """The known CSV logs present in ``run_dir``, in drawing order; an error when there are none."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a folder")
    found = [run_dir / name for name in LOG_NAMES if (run_dir / name).is_file()]
    if not found:
        raise UserError(f"{run_dir} holds none of {', '.join(LOG_NAMES)} (the logs of training.pipeline, "
                        f"training.world_model and training.agents.sb3); nothing to draw")
    return found


def describe(logs: Sequence[Path]) -> str:
    """'found a.csv, b.csv (pipeline run)': tells the user what was read before the PNGs are listed."""
    names = [p.name for p in logs]
    kinds = list(dict.fromkeys(c.kind for c in CHARTS if c.csv in names))
    return f"found {', '.join(names)} ({' + '.join(kinds)} run)"


def _read_columns(path: Path) -> dict[str, np.ndarray]:
    """Each CSV column as floats; empty or non-numeric cells (``hns`` without human scores) become NaN."""
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        names = [n for n in reader.fieldnames or () if n]
    return {name: np.array([_to_float(row.get(name)) for row in rows], dtype=float) for name in names}


def _to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _has_data(values: np.ndarray | None) -> bool:
    return values is not None and bool(np.isfinite(values).any())


def _moving_mean(y: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over the last ``window`` finite values; long runs' per-step losses are too noisy to read."""
    finite = np.isfinite(y)
    sums = np.cumsum(np.where(finite, y, 0.0))
    counts = np.cumsum(finite)
    sums[window:] = sums[window:] - sums[:-window]
    counts[window:] = counts[window:] - counts[:-window]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _pick_x(chart: Chart, columns: dict[str, np.ndarray], rows: int) -> tuple[str, np.ndarray]:
    for name in chart.x:
        if _has_data(columns.get(name)):
            return name, columns[name]
    return "row", np.arange(1, rows + 1, dtype=float)


def _keep_last_per_x(x: np.ndarray, columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Sorted by x, keeping the last row of each x: a resumed run may log the steps after its last save twice."""
    if len(x) < 2 or bool((np.diff(x) > 0).all()):
        return x, columns
    last = {value: i for i, value in enumerate(x.tolist())}  # NaN x values are all distinct: kept
    kept = np.array(sorted(last.values()), dtype=int)
    order = kept[np.argsort(x[kept], kind="stable")]  # NaN x last
    return x[order], {name: values[order] for name, values in columns.items()}


def _panels(chart: Chart, columns: dict[str, np.ndarray]) -> list[Panel]:
    """The chart's panels that have something to draw, plus one for unlisted columns when ``chart.rest``."""
    panels = [p for p in chart.panels if any(_has_data(columns.get(c)) for c in p.columns)]
    if chart.rest:
        named = {c for p in chart.panels for c in p.columns} | set(chart.x)
        extra = tuple(c for c in columns if c not in named and _has_data(columns[c]))
        if extra:
            panels.append(Panel("other scalars", extra, legend=True))
    return panels


def _draw_panel(ax: Any, panel: Panel, x: np.ndarray, columns: dict[str, np.ndarray]) -> None:
    drawn = [c for c in panel.columns if _has_data(columns.get(c))]
    rows = len(x)
    marker = "o" if rows <= MARKERS_UP_TO else None
    for i, name in enumerate(drawn):
        y = columns[name]
        color = f"C{i}"
        if rows >= SMOOTH_FROM:
            ax.plot(x, y, color=color, alpha=0.3, linewidth=0.8)
            ax.plot(x, _moving_mean(y, max(5, rows // 50)), color=color, label=f"{name} (moving mean)")
        else:
            ax.plot(x, y, color=color, marker=marker, markersize=3, label=name)
        if i == 0 and panel.std is not None and _has_data(columns.get(panel.std)):
            std = columns[panel.std]
            ax.fill_between(x, y - std, y + std, color=color, alpha=0.2, linewidth=0, label=f"±{panel.std}")
    values = np.concatenate([columns[c][np.isfinite(columns[c])] for c in drawn])
    if panel.log and values.size and (values > 0).all():
        ax.set_yscale("log")
    ax.set_title(panel.title, fontsize=10)
    ax.grid(True, alpha=0.3)
    if panel.legend or len(drawn) > 1 or panel.std is not None or rows >= SMOOTH_FROM:
        ax.legend(fontsize=8)


def _figure_class() -> tuple[Any, Any]:
    """matplotlib's Figure and Agg canvas, imported here so that ``import training.runtime.report`` needs no matplotlib.

    Drawing on a Figure with an explicit Agg canvas (not pyplot) leaves the caller's backend and figure list alone.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as err:
        raise ModuleNotFoundError('training.runtime.report draws with matplotlib, which is not installed: '
                          'pip install "gym-diamond[examples]" (or pip install "matplotlib>=3.7")') from err
    return Figure, FigureCanvasAgg


def draw_chart(chart: Chart, csv_path: Path, png_path: Path, title: str = "") -> bool:
    """Draw one CSV log to ``png_path``; False (and no file) when the log has no rows to draw."""
    columns = _read_columns(csv_path)
    rows = len(next(iter(columns.values()), ()))
    panels = _panels(chart, columns) if rows else []
    if not panels:
        return False
    x_name, x = _pick_x(chart, columns, rows)
    x, columns = _keep_last_per_x(x, columns)
    figure_cls, canvas_cls = _figure_class()
    ncols = 1 if len(panels) == 1 else 2
    nrows = math.ceil(len(panels) / ncols)
    fig = figure_cls(figsize=(6.0 * ncols, 3.4 * nrows + 0.6), layout="constrained")
    canvas_cls(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, panel in zip(axes, panels, strict=False):
        _draw_panel(ax, panel, x, columns)
        ax.set_xlabel(x_name.replace("_", " "))
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.suptitle(f"{title}: {chart.title}" if title else chart.title)
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    return True


def draw_learning_curve(csv_path: Path, png_path: Path, title: str = "") -> bool:
    """An agent's evaluations (``training.agents.dream_actor_critic``'s ``evaluations.csv``) against updates and against
    CPU hours: the real score with its 95% interval, and reward signs per 1,000 steps in the dream beside the
    game's, whose parting shows an agent exploiting its dream. False (and no file) when there is no row."""
    columns = _read_columns(csv_path)
    if not len(columns.get("update", ())):
        return False
    figure_cls, canvas_cls = _figure_class()
    fig = figure_cls(figsize=(12.0, 7.4), layout="constrained")
    canvas_cls(fig)
    axes = fig.subplots(2, 2, squeeze=False)
    xs = (("updates", columns["update"]), ("CPU hours", columns["cpu_seconds"] / 3600))
    marker = "o" if len(columns["update"]) <= MARKERS_UP_TO else None
    for col, (x_name, x) in enumerate(xs):
        score, rates = axes[0, col], axes[1, col]
        score.plot(x, columns["real_mean"], color="C0", marker=marker, markersize=3, label="real game, mean")
        score.fill_between(x, columns["real_low"], columns["real_high"], color="C0", alpha=0.2, linewidth=0,
                           label="95% bootstrap interval")
        score.set_title("real-game score", fontsize=10)
        rates.plot(x, columns["dream_sign_rate"], color="C1", marker=marker, markersize=3, label="in the dream")
        rates.plot(x, columns["real_sign_rate"], color="C0", marker=marker, markersize=3, label="in the real game")
        rates.set_title("reward signs per 1,000 steps", fontsize=10)
        for ax in (score, rates):
            ax.set_xlabel(x_name)
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
    fig.suptitle(title or "agent evaluations")
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=100)
    return True


def write_report(run_dir: str | Path, out: str | Path | None = None) -> list[Path]:
    """Draw every known CSV log of ``run_dir`` to PNGs in ``out`` (default: ``run_dir``); returns their paths.

    Raises ValueError when the folder holds none of the logs (a wrong path is the likely cause).
    """
    run_dir = Path(run_dir)
    logs = find_logs(run_dir)
    out = Path(out) if out is not None else run_dir
    written: list[Path] = []
    for path in logs:
        chart = next(c for c in CHARTS if c.csv == path.name)
        png = out / chart.png
        if png in written:  # e.g. losses.csv next to a pipeline's world_model.csv: keep both pictures
            png = out / f"{Path(chart.png).stem}_{path.stem}.png"
        if draw_chart(chart, path, png, title=run_dir.resolve().name):
            written.append(png)
    return written


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Draw a training run folder's CSV logs to PNG files.")
    parser.add_argument("run_dir", help="a folder written by training.pipeline, training.world_model or "
                                        "training.agents.sb3")
    parser.add_argument("--out", default=None, help="folder for the PNGs (default: the run folder)")
    args = parser.parse_args(argv)
    print(describe(find_logs(args.run_dir)))
    paths = write_report(args.run_dir, args.out)
    if not paths:
        print("no rows to draw yet")
    for path in paths:
        print(path)


if __name__ == "__main__":
    main()
