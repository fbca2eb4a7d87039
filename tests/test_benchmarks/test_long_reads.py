"""benchmarks/long_reads.py: rewards and endings read over whole episodes from fresh sequences, one carried state,
or staggered states, with a stand-in reader that calls an ending once its state has read more than 19 transitions
(what a reader carried past its training length does)."""

import json

from helpers import counting_model, load_benchmark

from training.data.dataset import EpisodeDataset

long_reads = load_benchmark("long_reads")
L, WINDOW = 4, 19  # the stand-in's context frames; the window its count passes


def test_only_the_carried_state_reads_past_its_window(pong_data):
    dataset = EpisodeDataset(pong_data, game="Pong")
    lengths = [int(n) for n in dataset.lengths]  # two episodes cut short: no ending, no reward read
    report = long_reads.long_read_report(counting_model(L, WINDOW), dataset, [0, 1], window=WINDOW)
    # carried: every transition after the 19th of an episode (the burn-in's 3 counted) is called an ending
    carried = report["carried"]["termination_confusion"]
    assert carried[0][1] == sum(n - WINDOW for n in lengths)
    assert carried[0][0] + carried[0][1] == sum(n - (L - 1) for n in lengths)  # the burn-in's transitions left out
    for reading in ("fresh", "staggered"):  # never past 19 transitions from a zero state
        assert report[reading]["termination_confusion"][0][1] == 0
        assert report[reading]["transitions"] == report["carried"]["transitions"]


def test_the_command_prints_each_reading(pong_checkpoint, pong_data, capsys):
    long_reads.main(["--data", str(pong_data), "--checkpoint", str(pong_checkpoint), "--window", "7"])
    line = json.loads(capsys.readouterr().out)
    assert line["window"] == 7 and line["episodes"] >= 1
    assert set(long_reads.READINGS) <= set(line)
    assert all(line[name]["transitions"] == line["fresh"]["transitions"] > 0 for name in long_reads.READINGS)
