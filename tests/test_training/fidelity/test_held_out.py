"""A world model is judged only on episodes its run did not train on (training.fidelity.held_out)."""

import json

import numpy as np
import pytest
from helpers import make_tiny_checkpoint, real_pong_data, real_pong_episode

from gym_diamond import load_checkpoint
from training.data.dataset import Episode, EpisodeDataset
from training.fidelity.__main__ import main as fidelity_main
from training.fidelity.held_out import held_out_episodes, trained_episodes
from training.world_model.combine import combine_checkpoints
from training.world_model.run import train_world_model
from training.world_model.training_config import WorldModelTrainingConfig


def synthetic_dataset(root, lengths) -> EpisodeDataset:
    dataset = EpisodeDataset(root, game="Pong")
    for i, n in enumerate(lengths):
        z = np.zeros(n, dtype=bool)
        frames = np.full((n + 1, 64, 64, 3), i, dtype=np.uint8)
        dataset.append(Episode(frames, np.zeros(n, np.int64), np.zeros(n, np.float32), z, z.copy(), z.copy()))
    return dataset


def provenance_of(dataset: EpisodeDataset, test_fraction: float) -> dict:
    """What training.world_model records of its data."""
    return {"dataset_episodes": len(dataset), "dataset_lengths_digest": dataset.lengths_digest(),
            "test_fraction": test_fraction}


def test_on_its_own_data_a_checkpoint_is_judged_on_its_runs_held_out_episodes_only(tmp_path):
    dataset = synthetic_dataset(tmp_path / "own", [5 + i for i in range(20)])
    provenance = provenance_of(dataset, 0.3)
    held_out = dataset.split(0.3, seed=0)[1]
    assert 0 < held_out.size < 20
    np.testing.assert_array_equal(held_out_episodes(dataset, provenance), held_out)  # the default: the run's own
    smaller = held_out_episodes(dataset, provenance, 0.1)
    assert set(smaller) <= set(held_out)  # a part of the run's split is fine
    with pytest.raises(ValueError, match="episodes it trained on"):
        held_out_episodes(dataset, provenance, 0.6)  # takes in trained episodes: refused
    with pytest.raises(ValueError, match="trained on every episode"):
        held_out_episodes(dataset, provenance_of(dataset, 0.0))
    # the dataset grows after training: it is still the run's own, and the new episodes were never trained on
    synthetic_dataset(tmp_path / "own", [40, 41])
    grown = EpisodeDataset(tmp_path / "own")
    judged = held_out_episodes(grown, provenance)
    assert set(held_out) <= set(judged) and set(judged) - set(held_out) <= {20, 21}


def test_a_combined_checkpoint_is_judged_where_neither_network_trained(tmp_path):
    # the dream a user ships joins two runs' networks (training.world_model.combine): their records of the data
    # travel under "combined", and without them every episode, the trained ones too, would be judged
    dataset = synthetic_dataset(tmp_path / "own", [5 + i for i in range(20)])
    denoiser = make_tiny_checkpoint(tmp_path / "d.safetensors", provenance=provenance_of(dataset, 0.3))
    rew_end = make_tiny_checkpoint(tmp_path / "r.safetensors", seed=1, provenance=provenance_of(dataset, 0.2))
    combined = load_checkpoint(combine_checkpoints(denoiser, rew_end, tmp_path / "c.safetensors")).provenance
    judged = held_out_episodes(dataset, combined)
    np.testing.assert_array_equal(judged, dataset.split(0.2, seed=0)[1])  # held out by both runs
    assert 0 < judged.size < dataset.split(0.3, seed=0)[1].size
    with pytest.raises(ValueError, match="episodes it trained on"):
        held_out_episodes(dataset, combined, 0.3)  # the reward model trained on some of these
    only_denoiser = {"combined": {"denoiser": provenance_of(dataset, 0.3), "rew_end": {}}}
    np.testing.assert_array_equal(held_out_episodes(dataset, only_denoiser), dataset.split(0.3, seed=0)[1])


def test_data_collected_apart_is_held_out_as_a_whole(tmp_path):
    own = synthetic_dataset(tmp_path / "own", [5 + i for i in range(20)])
    apart = synthetic_dataset(tmp_path / "apart", [7, 9, 11])
    np.testing.assert_array_equal(held_out_episodes(apart, provenance_of(own, 0.1)), [0, 1, 2])
    np.testing.assert_array_equal(held_out_episodes(apart, provenance_of(own, 0.1), 0.5), apart.split(0.5)[1])
    np.testing.assert_array_equal(held_out_episodes(apart, {}), [0, 1, 2])  # a checkpoint that records no data


def test_the_trained_episodes_are_those_every_network_trained_on_and_only_on_its_own_data(tmp_path):
    # asked for on purpose (is the model underfit, or ungeneralised?): the complement of the run's held-out split
    dataset = synthetic_dataset(tmp_path / "own", [5 + i for i in range(20)])
    provenance = provenance_of(dataset, 0.3)
    trained = trained_episodes(dataset, provenance)
    np.testing.assert_array_equal(trained, dataset.split(0.3, seed=0)[0])
    assert not set(trained) & set(held_out_episodes(dataset, provenance))
    synthetic_dataset(tmp_path / "own", [40, 41])  # episodes added after training were never trained on
    np.testing.assert_array_equal(trained_episodes(EpisodeDataset(tmp_path / "own"), provenance), trained)
    # a combined checkpoint: the episodes both networks trained on
    denoiser = make_tiny_checkpoint(tmp_path / "d.safetensors", provenance=provenance_of(dataset, 0.3))
    rew_end = make_tiny_checkpoint(tmp_path / "r.safetensors", seed=1, provenance=provenance_of(dataset, 0.2))
    combined = load_checkpoint(combine_checkpoints(denoiser, rew_end, tmp_path / "c.safetensors")).provenance
    both = trained_episodes(dataset, combined)
    np.testing.assert_array_equal(both, np.intersect1d(dataset.split(0.3, seed=0)[0], dataset.split(0.2, seed=0)[0]))
    assert 0 < both.size < dataset.split(0.2, seed=0)[0].size
    apart = synthetic_dataset(tmp_path / "apart", [7, 9, 11])
    for other in (provenance, {}):
        with pytest.raises(ValueError, match="did not train on"):
            trained_episodes(apart, other)


def test_the_fidelity_command_refuses_a_fraction_that_takes_in_trained_episodes(tmp_path, capsys):
    data = real_pong_data(tmp_path / "data", episodes=3, steps=60)
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, test_fraction=0.3)
    checkpoint = train_world_model("Pong", data, tmp_path / "run", 1, model_preset="tiny", device="cpu",
                                   config=config, progress=False)
    held_out = EpisodeDataset(data).split(0.3, seed=0)[1]
    args = ["--checkpoint", str(checkpoint), "--data", str(data), "--samples", "2", "--horizons", "1",
            "--device", "cpu"]
    fidelity_main([*args, "--events-noise", "0.05"])
    out = capsys.readouterr().out
    assert f'"held_out_episodes": {held_out.size}' in out
    noisy = json.loads(out.strip().splitlines()[-1])  # the events on noisy real frames, every transition judged
    assert noisy["events_noise"] == 0.05 and sum(map(sum, noisy["termination_confusion"])) == sum(
        int(EpisodeDataset(data).lengths[i]) for i in held_out)
    with pytest.raises(SystemExit) as stopped:
        fidelity_main([*args, "--test-fraction", "0.9"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --test-fraction 0.9 would judge the checkpoint on episodes it trained on")
    assert len(err.splitlines()) == 1
    fidelity_main([*args, "--trained"])  # on purpose: the episodes it trained on, counted as such
    line = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    assert "held_out_episodes" not in line and line["trained_episodes"] == 3 - held_out.size
    with pytest.raises(SystemExit):
        fidelity_main([*args, "--trained", "--test-fraction", "0.1"])
    assert "give no --test-fraction" in capsys.readouterr().err


def test_the_same_episodes_collected_again_are_never_judged_as_held_out(tmp_path):
    # a dataset collected again (another machine, another run of the command, the episodes in another order or
    # beside new ones) has another lengths' digest: without the episodes' fingerprints, every episode of it, the
    # trained ones too, would be judged as held out
    own = synthetic_dataset(tmp_path / "own", [5 + i for i in range(20)])
    trained, held = own.split(0.3, seed=0)
    provenance = {**provenance_of(own, 0.3), "trained_episode_fingerprints": own.fingerprints(trained)}
    again = EpisodeDataset(tmp_path / "again", game="Pong")
    order = [*reversed(range(20))]
    for i in order:
        again.append(own.episode(i))
    synthetic_dataset(tmp_path / "again", [3, 4])  # two new episodes (ids 20, 21), never trained on
    again = EpisodeDataset(tmp_path / "again")
    expected = sorted([order.index(i) for i in held] + [20, 21])
    with pytest.warns(UserWarning, match=f"{trained.size} of the 22 episodes .* trained on"):
        judged = held_out_episodes(again, provenance)
    np.testing.assert_array_equal(judged, expected)
    with pytest.warns(UserWarning):
        assert set(held_out_episodes(again, provenance, 0.5)) <= set(expected)
    np.testing.assert_array_equal(trained_episodes(again, provenance), sorted(order.index(i) for i in trained))
    without = {k: v for k, v in provenance.items() if k != "trained_episode_fingerprints"}
    np.testing.assert_array_equal(held_out_episodes(again, without), np.arange(22))  # checkpoints written before
    copied = EpisodeDataset(tmp_path / "copied", game="Pong")
    for i in trained[:3]:
        copied.append(own.episode(i))
    with pytest.raises(ValueError, match="all episodes the checkpoint trained on"):
        held_out_episodes(copied, provenance)
    with pytest.raises(ValueError, match="did not train on"):
        trained_episodes(synthetic_dataset(tmp_path / "new", [3, 4]), provenance)


def test_a_run_records_the_fingerprints_of_every_episode_it_and_the_runs_it_went_on_from_trained_on(tmp_path):
    first = real_pong_data(tmp_path / "first", episodes=3, steps=40)  # seeds 0, 1, 2
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, test_fraction=0.3)
    parent = train_world_model("Pong", first, tmp_path / "parent", 1, model_preset="tiny", device="cpu",
                               config=config, progress=False)
    dataset = EpisodeDataset(first)
    trained, held = dataset.split(0.3, seed=0)
    recorded = load_checkpoint(parent).provenance["trained_episode_fingerprints"]
    assert recorded == sorted(dataset.fingerprints(trained)) and not set(recorded) & set(dataset.fingerprints(held))
    # a warm start on other data goes on from the parent's episodes: the checkpoint records both, and a resume of
    # it keeps them (its training state holds them). Here the parent's held-out episode (seed 1) is trained on, and
    # one it trained on (seed 0) held out
    second = EpisodeDataset(tmp_path / "second", game="Pong")
    for seed in (3, 0, 1, 2):
        second.append(real_pong_episode(40, seed))
    own_trained = second.split(0.3, seed=0)[0]
    assert set(recorded) - set(second.fingerprints(own_trained))  # inherited only: kept by the record alone
    child_config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4, test_fraction=0.3,
                                            init_from=str(parent))
    child = train_world_model("Pong", second.root, tmp_path / "child", 2, model_preset="tiny", device="cpu",
                              config=child_config, progress=False)
    expected = sorted(set(recorded) | set(second.fingerprints(own_trained)))
    assert load_checkpoint(child).provenance["trained_episode_fingerprints"] == expected
    resumed = train_world_model("Pong", second.root, tmp_path / "child", 3, model_preset="tiny", device="cpu",
                                config=child_config, progress=False)
    assert load_checkpoint(resumed).provenance["trained_episode_fingerprints"] == expected
