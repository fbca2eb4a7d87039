"""benchmarks/long_reads.py: rewards and endings read over whole episodes from fresh sequences, one carried state,
or staggered states, with a stand-in reader that calls an ending once its state has read more than 19 transitions
(what a reader carried past its training length does)."""

import json
from types import SimpleNamespace

import numpy as np
import torch
from helpers import load_benchmark

from gym_diamond.nn.rew_end import RewEndOutput
from training.data.dataset import EpisodeDataset

long_reads = load_benchmark("long_reads")
L, WINDOW = 4, 19


class CountingReader(torch.nn.Module):
    """Its state counts the transitions it has read; it calls an ending once that count passes 19 and never a
    reward."""

    def initial_state(self, n, device=None):
        return torch.zeros(1, n, 1), torch.zeros(1, n, 1)

    def forward(self, frames, actions, next_frames, state=None):
        n, t = actions.shape
        start = state[0] if state is not None else torch.zeros(1, n, 1)
        counts = start[0] + torch.arange(1, t + 1, dtype=torch.float32)  # (n, t): transitions read at each step
        end_logits = torch.stack([torch.zeros_like(counts), counts - WINDOW - 0.5], -1)
        reward_logits = torch.stack([torch.zeros_like(counts), torch.ones_like(counts), torch.zeros_like(counts)], -1)
        last = counts[:, -1:].T.unsqueeze(-1)
        return RewEndOutput(reward_logits, end_logits, (last, last.clone()))

    def burn_in(self, context, actions, state=None):
        return self(context[:, :-1], actions[:, :-1], context[:, 1:], state).state


def counting_model():
    return SimpleNamespace(rew_end=CountingReader(), device=torch.device("cpu"),
                           config=SimpleNamespace(denoiser=SimpleNamespace(context_length=L)))


def test_only_the_carried_state_reads_past_its_window(pong_data):
    dataset = EpisodeDataset(pong_data, game="Pong")
    lengths = [int(n) for n in dataset.lengths]  # two episodes cut short: no ending, no reward read
    report = long_reads.long_read_report(counting_model(), dataset, [0, 1], window=WINDOW)
    # carried: every transition after the 19th of an episode (the burn-in's 3 counted) is called an ending
    carried = report["carried"]["termination_confusion"]
    assert carried[0][1] == sum(n - WINDOW for n in lengths)
    assert carried[0][0] + carried[0][1] == sum(n - (L - 1) for n in lengths)  # the burn-in's transitions left out
    for reading in ("fresh", "staggered"):  # never past 19 transitions from a zero state
        assert report[reading]["termination_confusion"][0][1] == 0
        assert report[reading]["transitions"] == report["carried"]["transitions"]


def test_the_calls_of_one_episode_match_reading_it_alone():
    dataset = SimpleNamespace(episode=lambda e: SimpleNamespace(
        frames=np.zeros((30 + 10 * e + 1, 64, 64, 3), np.uint8), actions=np.zeros(30 + 10 * e, np.int64)))
    together = long_reads.dream_calls(counting_model(), dataset, [0, 1], None)
    for e in (0, 1):
        alone = long_reads.dream_calls(counting_model(), dataset, [e], None)[0]
        assert all(np.array_equal(a, b) for a, b in zip(together[e], alone, strict=True))
        _, ends = alone
        assert len(ends) == 30 + 10 * e and ends[:L - 1].sum() == 0 and ends[WINDOW:].all() and not ends[:WINDOW].any()


def test_the_command_prints_each_reading(pong_checkpoint, pong_data, capsys):
    long_reads.main(["--data", str(pong_data), "--checkpoint", str(pong_checkpoint), "--window", "7"])
    line = json.loads(capsys.readouterr().out)
    assert line["window"] == 7 and line["episodes"] >= 1
    assert set(long_reads.READINGS) <= set(line)
    assert all(line[name]["transitions"] == line["fresh"]["transitions"] > 0 for name in long_reads.READINGS)
