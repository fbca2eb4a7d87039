"""training.runtime.report: run folders of each kind become valid PNGs, and bad folders fail clearly."""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
from PIL import Image  # noqa: E402  (a matplotlib dependency: present once matplotlib is)

import training.runtime.report as report  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PIPELINE_PNGS = {"collect.png", "world_model_losses.png", "actor_critic.png", "real_returns.png"}


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def assert_png(path: Path) -> None:
    assert path.is_file(), path
    assert path.read_bytes()[:8] == PNG_SIGNATURE, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        width, height = image.size
        image.load()  # decodes the whole file: a truncated one fails here
    assert 300 <= width <= 4000 and 200 <= height <= 4000, (path, image.size)


def make_pipeline_dir(run: Path) -> Path:
    """The four CSVs of a three-epoch pipeline run, with the pipeline's column names."""
    run.mkdir(parents=True, exist_ok=True)
    write_csv(run / "collect.csv", [
        {"epoch": e, "env_steps": 150 + 20 * (e - 1), "dataset_steps": 120 + 20 * e, "episodes": e,
         "steps": 20, "episodes_finished": e % 2, "mean_return": 1.5 * e if e % 2 else math.nan,
         "seconds": 0.2, "steps_per_second": 100.0 + e} for e in (1, 2, 3)])
    write_csv(run / "world_model.csv", [
        {"epoch": e, "denoiser_loss": 1.0 / e, "denoiser_grad_norm": 3.0 - e / 2, "reward_loss": 0.9 / e,
         "end_loss": 0.5 / e, "rew_end_grad_norm": 2.0} for e in (1, 2, 3)])
    write_csv(run / "actor_critic.csv", [  # ImaginationTrainer.step's scalars, plus one report does not know
        {"epoch": e, "total": 0.3 - 0.1 * e, "policy": -0.05 * e, "value": 0.2 / e, "entropy": -0.001,
         "policy_entropy": 1.3 - 0.1 * e, "advantage": 0.01 * e, "ac_grad_norm": 0.5,
         "imagined_reward_per_step": 0.02 * e, "imagined_end_rate": 0.01, "new_scalar": e} for e in (1, 2, 3)])
    write_csv(run / "evaluate.csv", [  # hns is empty for games without human scores
        {"epoch": e, "env_steps": 150 + 20 * (e - 1), "mean": 2.0 * e, "std": 0.5, "hns": ""} for e in (2, 3)])
    return run


def make_world_model_dir(run: Path) -> Path:
    """A world-model run's losses.csv, long enough to be smoothed, with the steps after a resume logged twice."""
    run.mkdir(parents=True, exist_ok=True)
    steps = [*range(10, 410, 10), *range(310, 710, 10)]
    write_csv(run / "losses.csv", [
        {"step": s, "denoiser_loss": 1.0 / s ** 0.5, "denoiser_grad_norm": 1.0, "reward_loss": 0.3,
         "end_loss": 0.01 + 1.0 / s, "rew_end_grad_norm": 0.4, "seconds": 0.05} for s in steps])
    return run


def make_sb3_dir(run: Path) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    write_csv(run / "eval.csv", [
        {"step": s, "cpu_seconds": s / 100, "mean_return": s / 1000, "std_return": 0.3, "hns": "nan", "episodes": 4,
         "sign_rate": 1.0, "dream_sign_rate": 3.0} for s in (1000, 2000)])
    return run


def pngs_in(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("*.png")}


def test_pipeline_folder_draws_one_png_per_log(tmp_path):
    run = make_pipeline_dir(tmp_path / "run")
    out = tmp_path / "plots"  # not there yet: created
    paths = report.write_report(run, out)
    assert all(p.parent == out for p in paths)
    assert {p.name for p in paths} == PIPELINE_PNGS == pngs_in(out)
    assert len(paths) == len(set(paths))
    assert pngs_in(run) == set()  # --out given: nothing written next to the CSVs
    for path in paths:
        assert_png(path)
    with Image.open(out / "actor_critic.png") as many, Image.open(out / "real_returns.png") as few:
        assert many.size[1] > few.size[1]  # seven panels in a grid are taller than two


def test_world_model_folder_writes_next_to_the_csv(tmp_path):
    run = make_world_model_dir(tmp_path / "wm")
    paths = report.write_report(run)
    assert paths == [run / "world_model_losses.png"]
    assert pngs_in(run) == {"world_model_losses.png"}
    assert_png(paths[0])


def test_sb3_folder(tmp_path):
    run = make_sb3_dir(tmp_path / "sb3")
    paths = report.write_report(str(run))  # str paths work too
    assert paths == [run / "real_returns.png"]
    assert_png(paths[0])


def test_two_logs_for_one_picture_do_not_overwrite_each_other(tmp_path):
    run = make_world_model_dir(make_pipeline_dir(tmp_path / "both"))
    paths = report.write_report(run)
    assert len(paths) == len(set(paths)) == 5
    assert {p.name for p in paths} == pngs_in(run) == PIPELINE_PNGS | {"world_model_losses_losses.png"}


def test_cli_says_what_it_found_and_prints_the_paths(tmp_path, capsys):
    run = make_pipeline_dir(tmp_path / "run")
    report.main([str(run), "--out", str(tmp_path / "plots")])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "found collect.csv, world_model.csv, actor_critic.csv, evaluate.csv (pipeline run)"
    printed = [Path(line) for line in lines[1:]]
    assert {p.name for p in printed} == PIPELINE_PNGS == pngs_in(tmp_path / "plots")
    for path in printed:
        assert_png(path)


def test_folder_without_logs_is_an_error(tmp_path, capsys):
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="none of collect.csv, world_model.csv, losses.csv.*eval.csv"):
        report.write_report(tmp_path)
    with pytest.raises(SystemExit) as exit_info:  # the CLI: a message, not a traceback
        report.main([str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: ") and "none of" in err
    with pytest.raises(FileNotFoundError, match="not a folder"):
        report.write_report(tmp_path / "missing")
    assert pngs_in(tmp_path) == set()


def test_logs_without_rows_draw_nothing(tmp_path, capsys):
    (tmp_path / "losses.csv").write_text("step,denoiser_loss,reward_loss,end_loss\n")  # a run that just started
    assert report.write_report(tmp_path) == []
    report.main([str(tmp_path)])
    assert capsys.readouterr().out.splitlines() == ["found losses.csv (world model run)", "no rows to draw yet"]
    assert pngs_in(tmp_path) == set()


def test_import_needs_no_matplotlib_and_drawing_says_what_to_install(tmp_path, monkeypatch):
    for name in [n for n in sys.modules if n == "matplotlib" or n.startswith("matplotlib.")] or ["matplotlib"]:
        monkeypatch.setitem(sys.modules, name, None)  # makes `import matplotlib...` raise ImportError
    spec = importlib.util.spec_from_file_location("report_without_matplotlib", report.__file__)
    fresh = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, fresh)
    spec.loader.exec_module(fresh)  # importing works
    run = make_sb3_dir(tmp_path / "sb3")
    with pytest.raises(ImportError, match=r'pip install "gym-diamond\[examples\]"'):
        fresh.write_report(run)
    assert pngs_in(run) == set()


def test_report_of_a_real_pipeline_run(tmp_path):
    from training.pipeline import Pipeline

    run = tmp_path / "breakout"
    Pipeline("Breakout", run, "micro", device="cpu", progress=False).run()
    paths = report.write_report(run)
    assert {p.name for p in paths} == PIPELINE_PNGS == pngs_in(run)
    for path in paths:
        assert_png(path)
