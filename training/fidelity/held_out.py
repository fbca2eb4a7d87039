"""Which episodes of a dataset a world model may be judged on: never those its run trained on.

``python -m training.world_model --test-fraction F`` trains on the episodes outside ``EpisodeDataset.split(F)``
and records F, the number of episodes and their lengths' digest in the checkpoint's provenance. A fidelity
figure on that same dataset (perhaps grown since) must use that split or a part of it: a larger fraction
would score episodes the model learnt from and flatter it. Data collected apart (another digest) is held
out as a whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset

__all__ = ["held_out_episodes"]


def held_out_episodes(dataset: EpisodeDataset, provenance: dict[str, Any],
                      test_fraction: float | None = None) -> np.ndarray:
    """The sorted ids of ``dataset``'s episodes to judge a checkpoint of ``provenance`` on.

    On the checkpoint's own training data: ``split(test_fraction)``'s held-out part, ``test_fraction``
    defaulting to the run's; a fraction that would take in a trained episode raises ValueError, as does a
    run that held nothing out. On other data (or a checkpoint that does not record its data): every episode,
    or ``split(test_fraction)``'s held-out part when a fraction is given.
    """
    trained_episodes, digest = provenance.get("dataset_episodes"), provenance.get("dataset_lengths_digest")
    own_data = (digest is not None and trained_episodes is not None and trained_episodes <= len(dataset)
                and dataset.lengths_digest(trained_episodes) == digest)
    if not own_data:
        if test_fraction is None:
            return np.arange(len(dataset), dtype=np.int64)
        return dataset.split(test_fraction, seed=0)[1]
    run_fraction = float(provenance.get("test_fraction", 0.0))
    if run_fraction == 0:
        raise UserError(f"the checkpoint was trained on every episode of {dataset.root}: judge it on data collected "
                        f"apart (python -m training.data.collect with another --seed)")
    fraction = run_fraction if test_fraction is None else test_fraction
    trained = dataset.split(run_fraction, seed=0)[0]
    trained = trained[trained < trained_episodes]
    test_ids = dataset.split(fraction, seed=0)[1]
    if np.intersect1d(test_ids, trained).size:
        raise UserError(f"--test-fraction {fraction} would judge the checkpoint on episodes it trained on (its run "
                        f"held out {run_fraction} of {dataset.root}): use {run_fraction} or less")
    return test_ids
