"""benchmarks/sample_efficiency.py: when each run first passes the ball's gate, by updates and by CPU hours."""


import json

from helpers import load_benchmark

from training.runtime.csv_log import CsvLog


def load_script():
    return load_benchmark("sample_efficiency")


def write_run(folder, rows):
    log = CsvLog(folder / "fidelity.csv")
    for update, hours, shown, within in rows:
        row = {"update": update, "train_cpu_hours": hours}
        for h in (1, 5, 15):
            row.update({f"h{h}_ball_real": 30, f"h{h}_ball_shown_model": shown, f"h{h}_ball_within_2px_model": within,
                        f"h{h}_ball_within_2px_repeat_last": 0.3 if h == 1 else 0.0,
                        f"h{h}_pooled_psnr_model": 30.0, f"h{h}_pooled_psnr_repeat_last": 32.0})
        log.write(row)


def test_the_table_names_the_first_update_that_passes_the_balls_gate(tmp_path, capsys):
    script = load_script()
    fast, slow = tmp_path / "fast", tmp_path / "slow"
    folder_rows = {fast: [(250, 0.1, 0.5, 0.1), (500, 0.2, 0.95, 0.6)],
                   slow: [(250, 0.1, 0.2, 0.0), (500, 0.2, 0.95, 0.25)]}  # slow: within 2 px below repeat-last at 1
    for folder, rows in folder_rows.items():
        folder.mkdir()
        write_run(folder, rows)
    script.main([str(fast), str(slow)])
    lines = capsys.readouterr().out.splitlines()
    fast_row = next(line for line in lines if line.startswith("| fast"))
    slow_row = next(line for line in lines if line.startswith("| slow"))
    assert fast_row.split(" | ")[2:4] == ["500 / 0.20", "500 / 0.20"]
    assert slow_row.split(" | ")[2:4] == ["not yet", "500 / 0.20"]  # at 5 steps repeat-last has no ball within 2 px


def test_runs_of_different_batch_sizes_are_put_on_a_samples_axis(tmp_path, capsys):
    script = load_script()
    for name, batch in (("big", 64), ("small", 16), ("unknown", None)):
        folder = tmp_path / name
        folder.mkdir()
        write_run(folder, [(125, 0.1, 0.5, 0.1), (250, 0.2, 0.95, 0.6)])
        if batch is not None:
            (folder / "config.json").write_text(json.dumps({"denoiser": {"batch_size": batch, "lr": 1e-3}}))
    assert [row["samples"] for row in script.read_rows(tmp_path / "big")] == [8000, 16000]
    assert [row["samples"] for row in script.read_rows(tmp_path / "small")] == [2000, 4000]
    assert all("samples" not in row for row in script.read_rows(tmp_path / "unknown"))
    script.main([str(tmp_path / name) for name in ("big", "small", "unknown")])
    lines = capsys.readouterr().out.splitlines()
    assert [next(line for line in lines if line.startswith(f"| {name} ")).split(" | ")[1]
            for name in ("big", "small", "unknown")] == ["64", "16", "?"]
