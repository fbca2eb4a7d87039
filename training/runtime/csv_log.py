"""An append-only CSV log that a resumed run truncates to its saved state."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

from gym_diamond.atomic import replace_atomic

__all__ = ["CsvLog", "ScalarMeans"]


class CsvLog:
    """Append rows of scalars to a CSV file, writing the header once; mirrored to TensorBoard if installed.

    The TensorBoard events go to ``<folder>/tensorboard`` with tags ``<csv name>/<column>``, at the
    row's ``step`` (or ``epoch``) value.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._tensorboard: Any = None

    def write(self, row: dict[str, Any]) -> None:
        """Append one row. The header comes from the first row; a row with columns the header lacks (a resumed
        run whose code measures more) rewrites the file with them added, the old rows left empty there, so that
        no value lands under another column's name."""
        header = self._header()
        if header is not None and not set(row) <= set(header):
            self._add_columns([c for c in row if c not in header])
            header = self._header()
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=header or list(row), restval="")
            if header is None:
                writer.writeheader()
            writer.writerow(row)
        self._mirror(row)

    def _header(self) -> list[str] | None:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self.path.open(newline="") as f:
            return next(csv.reader(f), None)

    def _add_columns(self, columns: list[str]) -> None:
        with self.path.open(newline="") as f:
            reader = csv.DictReader(f)
            fieldnames, rows = [*(reader.fieldnames or []), *columns], list(reader)

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fieldnames, restval="")
                writer.writeheader()
                writer.writerows(rows)

        replace_atomic(self.path, write)

    def _mirror(self, row: dict[str, Any]) -> None:
        if self._tensorboard is None:
            if importlib.util.find_spec("tensorboard") is None:
                self._tensorboard = False
            else:
                from torch.utils.tensorboard import SummaryWriter

                self._tensorboard = SummaryWriter(str(self.path.parent / "tensorboard"))
        if self._tensorboard is False:
            return
        step = int(row.get("step", row.get("epoch", 0)))
        for key, value in row.items():
            if key not in ("step", "epoch") and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._tensorboard.add_scalar(f"{self.path.stem}/{key}", value, step)
        self._tensorboard.flush()

    def drop_after(self, step: int, key: str = "step") -> None:
        """Forget rows logged after ``step``: a resumed run repeats those steps from the saved state."""
        if not self.path.exists():
            return
        with self.path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        kept = [r for r in rows if int(float(r[key])) <= step]
        if len(kept) == len(rows):
            return
        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(kept)

        replace_atomic(self.path, write)

    def rows(self) -> list[dict[str, float]]:
        """The rows written so far, each cell as a float. A cell left blank (a column added after its row was
        written, by a resumed run whose code measures more) is left out of its row: ``row.get(column)``."""
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]

    def logged(self, key: str = "step") -> set[int]:
        """The ``key`` values of the rows written so far."""
        if not self.path.exists():
            return set()
        with self.path.open(newline="") as f:
            return {int(float(r[key])) for r in csv.DictReader(f)}


class ScalarMeans:
    """The mean of each scalar over the updates that returned it: an epoch's row, not its last update's.

    One update of a rare-reward game's actor-critic may see no reward at all; the mean over an epoch's hundreds of
    updates is the rate it learnt from.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def add(self, scalars: dict[str, Any]) -> None:
        for name, value in scalars.items():
            self._sums[name] = self._sums.get(name, 0.0) + float(value)
            self._counts[name] = self._counts.get(name, 0) + 1

    def means(self) -> dict[str, float]:
        return {name: total / self._counts[name] for name, total in self._sums.items()}

    def take(self) -> dict[str, float]:
        """The means so far, then start over: the row of one logging window."""
        means = self.means()
        self._sums, self._counts = {}, {}
        return means

    def to_dict(self) -> dict[str, dict[str, float]]:
        """The sums and counts so far, JSON-ready: a run saved mid-epoch writes the epoch's row in full later."""
        return {"sums": dict(self._sums), "counts": dict(self._counts)}

    @classmethod
    def from_dict(cls, saved: dict[str, dict[str, float]] | None) -> ScalarMeans:
        """The means ``to_dict`` saved (empty for None)."""
        means = cls()
        if saved is not None:
            means._sums = {name: float(total) for name, total in saved["sums"].items()}
            means._counts = {name: int(count) for name, count in saved["counts"].items()}
        return means
