"""CsvLog: rows land under their own columns, also when a resumed run logs columns the file lacks."""

import csv

from training.runtime.csv_log import CsvLog


def read(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_new_columns_extend_the_header_and_old_rows_stay_whole(tmp_path):
    log = CsvLog(tmp_path / "fidelity.csv")
    log.write({"update": 1000, "psnr": 27.1, "reward_recall": 0.0})
    log.write({"update": 1500, "psnr": 27.5, "player_shown": 1.0, "reward_recall": 0.25})  # a newer code's row
    log.write({"update": 2000, "reward_recall": 0.5, "psnr": 28.0})  # another order, a column missing
    rows = read(tmp_path / "fidelity.csv")
    assert list(rows[0]) == ["update", "psnr", "reward_recall", "player_shown"]
    assert rows[0] == {"update": "1000", "psnr": "27.1", "reward_recall": "0.0", "player_shown": ""}
    assert rows[1] == {"update": "1500", "psnr": "27.5", "reward_recall": "0.25", "player_shown": "1.0"}
    assert rows[2] == {"update": "2000", "psnr": "28.0", "reward_recall": "0.5", "player_shown": ""}
    log.drop_after(1500, key="update")
    assert [r["update"] for r in read(tmp_path / "fidelity.csv")] == ["1000", "1500"]


def test_rows_read_a_log_whose_early_rows_predate_a_column(tmp_path):
    log = CsvLog(tmp_path / "eval.csv")
    log.write({"step": 100, "real_score_mean": -21.0})  # written by an older version
    log.write({"step": 200, "real_score_mean": -20.0, "cpu_seconds": 12.5})  # the resumed run measures more
    assert log.rows() == [{"step": 100.0, "real_score_mean": -21.0},
                          {"step": 200.0, "real_score_mean": -20.0, "cpu_seconds": 12.5}]
    assert CsvLog(tmp_path / "missing.csv").rows() == []


def test_a_resumed_sb3_run_reads_an_eval_log_that_predates_a_column(tmp_path):
    from training.agents.sb3 import _RealGameEval

    log = CsvLog(tmp_path / "eval.csv")
    log.write({"step": 100, "real_score_mean": -21.0, "cpu_seconds": 30.0})
    log.write({"step": 200, "real_score_mean": -20.0, "cpu_seconds": 60.0, "dream_sign_rate": 1.5})
    callback = _RealGameEval(None, "Pong", 100, 1, 4, 100, log, 0)  # crashed on float("")
    assert callback.cpu_offset == 60.0
