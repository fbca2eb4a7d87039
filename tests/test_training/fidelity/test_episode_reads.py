"""Rewards and endings read over whole episodes as a dream reads them, with a stand-in reader that calls an ending
once its state has read more than 19 transitions (what a reader carried past its training length does)."""

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import counting_model

from training.fidelity.episode_reads import dream_calls, dream_reading_confusion

L, WINDOW = 4, 19


def episodes(*lengths: int) -> SimpleNamespace:
    """Episodes of these lengths (black frames) that each end in a termination on their last transition."""
    def episode(e):
        n = lengths[e]
        terminated = np.zeros(n, bool)
        terminated[-1] = True
        return SimpleNamespace(frames=np.zeros((n + 1, 64, 64, 3), np.uint8), actions=np.zeros(n, np.int64),
                               rewards=np.zeros(n, np.float32), terminated=terminated)
    return SimpleNamespace(episode=episode)


def test_the_calls_of_one_episode_match_reading_it_alone():
    dataset = episodes(30, 40)
    together = dream_calls(counting_model(L, WINDOW), dataset, [0, 1], None)
    for e, length in enumerate((30, 40)):
        alone = dream_calls(counting_model(L, WINDOW), dataset, [e], None)[0]
        assert all(np.array_equal(a, b) for a, b in zip(together[e], alone, strict=True))
        _, ends = alone  # carried: the 3 burn-in transitions counted, an ending from the 20th transition on
        assert len(ends) == length and ends[WINDOW:].all() and not ends[:WINDOW].any()


@pytest.mark.parametrize("window, false_endings, endings_read", [(None, 10 + 20, 2), (WINDOW, 0, 0), (7, 0, 0)])
def test_only_a_carried_state_calls_endings_past_its_window(window, false_endings, endings_read):
    report = dream_reading_confusion(counting_model(L, WINDOW), episodes(30, 40), [0, 1], window=window,
                                     batch_size=1)
    (kept, false), (missed, read) = report.termination.tolist()
    assert kept + false + missed + read == (30 - (L - 1)) + (40 - (L - 1))  # the burn-ins left out
    assert (false, read) == (false_endings, endings_read) and missed == 2 - endings_read
