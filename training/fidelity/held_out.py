"""Which episodes of a dataset a world model may be judged on: never those its run trained on.

``python -m training.world_model --test-fraction F`` trains on the episodes outside ``EpisodeDataset.split(F)``
and records F, the number of episodes and their lengths' digest in the checkpoint's provenance. A fidelity
figure on that same dataset (perhaps grown since) must use that split or a part of it: a larger fraction
would score episodes the model learnt from and flatter it. Data collected apart (another digest) is held
out as a whole, except the episodes of it the checkpoint trained on: a checkpoint records the fingerprint of each
episode it trained on (``EpisodeDataset.fingerprints``, of their content), so the same episodes collected again, in
another order or beside others, or copied, are recognised wherever they lie. ``trained_episodes`` gives the
others, on purpose: a dream that misses an event on the episodes it trained on too is underfit (more updates or
capacity), one that draws it there and not on held-out ones has not generalised (more data).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from gym_diamond import WorldModel, load_checkpoint, resolve_device
from gym_diamond.errors import UserError
from training.data.dataset import EpisodeDataset

__all__ = ["held_out_episodes", "judged_data", "recorded_fingerprints", "trained_episodes"]


def held_out_episodes(dataset: EpisodeDataset, provenance: dict[str, Any],
                      test_fraction: float | None = None) -> np.ndarray:
    """The sorted ids of ``dataset``'s episodes to judge a checkpoint of ``provenance`` on.

    On the checkpoint's own training data: ``split(test_fraction)``'s held-out part, ``test_fraction``
    defaulting to the run's; a fraction that would take in a trained episode raises ValueError, as does a
    run that held nothing out. On other data (or a checkpoint that does not record its data): every episode,
    or ``split(test_fraction)``'s held-out part when a fraction is given. A combined checkpoint (one network
    from each of two runs, ``training.world_model.combine``) is judged where neither network trained. Wherever they
    lie, the episodes whose fingerprints the checkpoint records as trained on are left out (with a warning), and
    data that holds nothing else is refused.
    """
    return _never_trained_on(dataset, provenance, _split_held_out(dataset, provenance, test_fraction))


def judged_data(data: str | Path, game: str, checkpoint: str | Path | None = None,
                test_fraction: float | None = None, device: str | None = None
                ) -> tuple[WorldModel | None, EpisodeDataset, np.ndarray]:
    """A benchmark's world model (None without ``checkpoint``), its dataset and the episodes to judge: the
    checkpoint's held-out ones (``held_out_episodes``), or without a checkpoint the split of ``test_fraction``
    (default 0.1)."""
    model, provenance = None, {}
    if checkpoint:
        loaded = load_checkpoint(checkpoint, device=resolve_device(device))
        model, provenance = loaded.world_model, loaded.provenance
    dataset = EpisodeDataset(data, game=game)
    if not provenance and test_fraction is None:
        test_fraction = 0.1
    return model, dataset, held_out_episodes(dataset, provenance, test_fraction)


def _split_held_out(dataset: EpisodeDataset, provenance: dict[str, Any], test_fraction: float | None) -> np.ndarray:
    """``held_out_episodes`` by the runs' records of their data and split alone."""
    runs = [run for run in _training_runs(provenance) if _trained_on(dataset, run)]
    if not runs:
        if test_fraction is None:
            return np.arange(len(dataset), dtype=np.int64)
        return dataset.split(test_fraction, seed=0)[1]
    held_fraction = min(float(run.get("test_fraction", 0.0)) for run in runs)  # held out by every run
    if held_fraction == 0:
        raise UserError(f"the checkpoint was trained on every episode of {dataset.root}: judge it on data collected "
                        f"apart (python -m training.data.collect with another --seed)")
    trained = np.unique(np.concatenate([_trained_episodes(dataset, run) for run in runs]))
    fraction = held_fraction if test_fraction is None else test_fraction
    test_ids = dataset.split(fraction, seed=0)[1]
    if test_fraction is None:  # the run's split; with two networks, where neither trained
        return np.setdiff1d(test_ids, trained)
    if np.intersect1d(test_ids, trained).size:
        raise UserError(f"--test-fraction {fraction} would judge the checkpoint on episodes it trained on (its run "
                        f"held out {held_fraction} of {dataset.root}): use {held_fraction} or less")
    return test_ids


def trained_episodes(dataset: EpisodeDataset, provenance: dict[str, Any]) -> np.ndarray:
    """The sorted ids of ``dataset``'s episodes that every network of a checkpoint of ``provenance`` trained on (a
    combined checkpoint's both); refused where it did not train on ``dataset``, or trained on none of them."""
    runs = [run for run in _training_runs(provenance) if _trained_on(dataset, run)]
    if not runs:
        return _recognised_episodes(dataset, provenance)
    trained = _trained_episodes(dataset, runs[0])
    for run in runs[1:]:
        trained = np.intersect1d(trained, _trained_episodes(dataset, run))
    if trained.size == 0:
        raise UserError(f"the checkpoint's networks share no trained episode of {dataset.root}")
    return trained


def recorded_fingerprints(provenance: dict[str, Any]) -> list[str]:
    """The fingerprints of the episodes a checkpoint's networks trained on, as its provenance records them (both
    networks' for a combined checkpoint; none for checkpoints written before they were recorded)."""
    return sorted({f for run in _training_runs(provenance) for f in run.get("trained_episode_fingerprints", ())})


def _never_trained_on(dataset: EpisodeDataset, provenance: dict[str, Any], episode_ids: np.ndarray) -> np.ndarray:
    """``episode_ids`` without those whose fingerprints the checkpoint records as trained on."""
    seen = set(recorded_fingerprints(provenance))
    if not seen or episode_ids.size == 0:
        return episode_ids
    unseen = np.array([f not in seen for f in dataset.fingerprints(episode_ids)], dtype=bool)
    if not unseen.any():
        raise UserError(f"the {episode_ids.size} episodes of {dataset.root} to judge are all episodes the checkpoint "
                        f"trained on (the same episodes collected again, or copied): judge it on data collected "
                        f"apart (python -m training.data.collect with another --seed)")
    if not unseen.all():
        warnings.warn(f"{int((~unseen).sum())} of the {episode_ids.size} episodes of {dataset.root} to judge are "
                      f"episodes the checkpoint trained on (collected again, or copied): left out", stacklevel=3)
    return episode_ids[unseen]


def _recognised_episodes(dataset: EpisodeDataset, provenance: dict[str, Any]) -> np.ndarray:
    """The ids of ``dataset``'s episodes that every network trained on by the fingerprints recorded (data the
    checkpoint's runs did not record as theirs: collected again, or copied); refused where there are none."""
    records = [set(run["trained_episode_fingerprints"]) for run in _training_runs(provenance)
               if run.get("trained_episode_fingerprints")]
    fingerprints = dataset.fingerprints() if records else []
    recognised = np.flatnonzero([all(f in record for record in records) for f in fingerprints]).astype(np.int64)
    if recognised.size == 0:
        raise UserError(f"the checkpoint did not train on {dataset.root} (its provenance records other data, or "
                        f"none, and no episode it trained on is there): its trained episodes are in the data it "
                        f"was trained on")
    return recognised


def _training_runs(provenance: dict[str, Any]) -> list[dict[str, Any]]:
    """The records of the runs that trained the checkpoint's networks: its own, and each combined network's."""
    combined = provenance.get("combined", {})
    return [provenance, *(record for record in combined.values() if isinstance(record, dict))]


def _trained_episodes(dataset: EpisodeDataset, run: dict[str, Any]) -> np.ndarray:
    """The ids of the episodes ``run`` trained on: outside its held-out split, among those it had."""
    trained = dataset.split(float(run["test_fraction"]), seed=0)[0]
    return trained[trained < run["dataset_episodes"]]


def _trained_on(dataset: EpisodeDataset, run: dict[str, Any]) -> bool:
    """Whether ``run`` trained on ``dataset`` (its first episodes, the dataset perhaps grown since)."""
    episodes, digest = run.get("dataset_episodes"), run.get("dataset_lengths_digest")
    return (digest is not None and episodes is not None and episodes <= len(dataset)
            and dataset.lengths_digest(episodes) == digest)
