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
