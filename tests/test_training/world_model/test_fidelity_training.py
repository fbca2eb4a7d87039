"""Whether the denoiser keeps the ball of a noisy real frame (training.fidelity.measures.ball_shown_by_sigma), and the
fidelity figures a world-model run logs to fidelity.csv (--fidelity-every)."""

import csv
import dataclasses
import json

import pytest
import torch

from gym_diamond import WorldModel, load_checkpoint, tiny_world_model_config
from training.data.collect import main as collect_main
from training.data.dataset import EpisodeDataset
from training.fidelity.measures import ball_shown_by_sigma
from training.world_model.__main__ import main as world_model_main
from training.world_model.training_config import WorldModelTrainingConfig


@pytest.fixture(scope="module")
def pong_data(tmp_path_factory):
    """Two real Pong episodes of 150 random steps (cut short), one of them held out by --test-fraction 0.5."""
    root = tmp_path_factory.mktemp("pong") / "data"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    collect_main(["--game", "Pong", "--out", str(root), "--steps", "300", "--num-envs", "2"])
    torch.set_num_threads(threads)
    dataset = EpisodeDataset(root, game="Pong")
    assert len(dataset) == 2 and dataset.split(0.5)[1].size == 1
    return root


def test_ball_shown_by_sigma_gives_shares_that_repeat_with_the_seed(pong_data, pong_checkpoint, one_thread):
    dataset = EpisodeDataset(pong_data, game="Pong")
    model = load_checkpoint(pong_checkpoint).world_model
    model.train()
    sigmas = (0.05, 1.0, 5.0)
    first = ball_shown_by_sigma(model, dataset, [0, 1], sigmas=sigmas, samples=8, seed=1)
    assert model.training  # left in the mode it was in
    assert list(first) == list(sigmas)
    for score in first.values():
        assert score["real"] == 8  # random Pong shows the ball in most frames
        assert 0 <= score["within"] <= score["shown"] <= 1
    assert ball_shown_by_sigma(model, dataset, [0, 1], sigmas=sigmas, samples=8, seed=1) == first
    assert ball_shown_by_sigma(model, dataset, [0, 1], sigmas=sigmas, samples=8, seed=1, batch_size=3) == first


def test_a_denoiser_that_passes_its_input_through_keeps_the_ball_only_at_small_sigma(pong_data, one_thread):
    """EDM's preconditioning D = c_skip x + c_out F: without offset noise c_skip -> 1 and c_out -> 0 as sigma -> 0,
    so at sigma 1e-3 even an untrained network returns its input, ball and all; at sigma 5 its input is
    noise (c_skip ~ 0.01) and an untrained network, which knows nothing of the ball, shows none."""
    torch.manual_seed(0)
    config = tiny_world_model_config(num_actions=6)
    config = config.replace(denoiser=dataclasses.replace(config.denoiser, sigma_offset_noise=0.0))
    model = WorldModel(config)
    dataset = EpisodeDataset(pong_data, game="Pong")
    scores = ball_shown_by_sigma(model, dataset, [0, 1], sigmas=(1e-3, 5.0), samples=16, seed=0)
    assert scores[1e-3] == {"real": 16, "shown": 1.0, "within": 1.0}
    assert scores[5.0] == {"real": 16, "shown": 0.0, "within": 0.0}


def test_ball_shown_by_sigma_refuses_what_it_cannot_judge(pong_data, tmp_path):
    model = WorldModel(tiny_world_model_config(num_actions=6))
    dataset = EpisodeDataset(pong_data, game="Pong")
    with pytest.raises(ValueError, match="sigmas must be noise levels > 0"):
        ball_shown_by_sigma(model, dataset, [0], sigmas=(0.0, 1.0))
    with pytest.raises(ValueError, match="samples"):
        ball_shown_by_sigma(model, dataset, [0], samples=0)
    with pytest.raises(ValueError, match="no episode among the 0"):
        ball_shown_by_sigma(model, dataset, [])
    with pytest.raises(ValueError, match="supported games are Breakout, Pong"):
        ball_shown_by_sigma(model, EpisodeDataset(tmp_path / "m", game="MsPacman"), [0])


def _rows(path):
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _train(data, out, steps, *extra):
    world_model_main(["--game", "Pong", "--data", str(data), "--out", str(out), "--steps", str(steps), "--model",
                      "tiny", "--batch-size", "2", "--rew-end-sequence-length", "4", "--test-fraction", "0.5",
                      "--device", "cpu", "--seed", "1", *extra])
    return out / "world_model.safetensors"


def test_fidelity_logging_trains_the_same_weights_and_writes_a_row_per_judged_update(pong_data, tmp_path,
                                                                                     one_thread, capsys):
    plain = load_checkpoint(_train(pong_data, tmp_path / "plain", 3)).world_model
    judged = load_checkpoint(_train(pong_data, tmp_path / "judged", 3, "--fidelity-every", "2",
                                    "--fidelity-samples", "4")).world_model
    for (name, p), q in zip(plain.state_dict().items(), judged.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not (tmp_path / "plain" / "fidelity.csv").exists()
    rows = _rows(tmp_path / "judged" / "fidelity.csv")
    assert [row["update"] for row in rows] == ["2", "3"]  # every 2 updates and the last
    columns = list(rows[0])
    assert columns[:4] == ["update", "seconds", "train_cpu_hours", "h1_pooled_psnr_model"]
    for h in (1, 5, 15):
        assert {f"h{h}_pooled_psnr_model", f"h{h}_pooled_psnr_repeat_last", f"h{h}_ball_shown_model",
                f"h{h}_ball_within_2px_model", f"h{h}_ball_shown_repeat_last", f"h{h}_ball_within_2px_repeat_last",
                f"h{h}_paddle_shown_model", f"h{h}_paddle_within_2px_model"} <= set(columns)
    assert {"sigma0.05_ball_shown", "sigma5_ball_within_2px", "reward_recall", "reward_precision",
            "termination_recall", "termination_precision", "dream_reward_recall", "ball_serves_real",
            "ball_serve_drawn", "ball_pause_phantom", "ball_returns_real", "ball_return_drawn",
            "ball_miss_drawn", "ball_return_let_through"} <= set(columns)
    for row in rows:
        assert float(row["seconds"]) > 0 and 0 < float(row["h1_pooled_psnr_repeat_last"]) < 110
        assert 0 <= float(row["sigma5_ball_shown"]) <= 1 and row["h1_paddle_shown_repeat_last"] == "1.0"
    assert 0 < float(rows[0]["train_cpu_hours"]) < float(rows[1]["train_cpu_hours"])  # counted on, update by update
    out = capsys.readouterr().out
    assert "fidelity at update 2" in out and "denoised ball at sigma 0.05/0.2/0.5/1/2/5" in out


def test_fidelity_rows_survive_a_resume(pong_data, tmp_path, one_thread):
    out = tmp_path / "run"
    flags = ("--fidelity-every", "2", "--fidelity-samples", "2", "--only-denoiser")
    _train(pong_data, out, 2, "--save-every", "1", *flags)
    rows = _rows(out / "fidelity.csv")
    assert [row["update"] for row in rows] == ["2"]
    assert "reward_recall" not in rows[0]  # the reward/termination model does not train here
    with (out / "fidelity.csv").open("a") as f:  # written after the last save, then killed
        f.write("3" + ",0" * (len(rows[0]) - 1) + "\n")
    _train(pong_data, out, 4, *flags)
    assert [row["update"] for row in _rows(out / "fidelity.csv")] == ["2", "4"]
    # the state of update 4 was saved but its row lost: the next command writes it before going on
    (out / "fidelity.csv").write_text("".join((out / "fidelity.csv").read_text().splitlines(True)[:2]))
    _train(pong_data, out, 4, *flags)
    assert [row["update"] for row in _rows(out / "fidelity.csv")] == ["2", "4"]


def test_fidelity_logging_needs_held_out_episodes(pong_data, tmp_path, capsys):
    with pytest.raises(ValueError, match="test_fraction > 0"):
        WorldModelTrainingConfig(fidelity_every=10)
    with pytest.raises(SystemExit):
        world_model_main(["--game", "Pong", "--data", str(pong_data), "--out", str(tmp_path / "x"), "--steps", "1",
                          "--fidelity-every", "1"])
    assert "--fidelity-every judges the model on held-out episodes" in capsys.readouterr().err
    with pytest.raises(ValueError, match="fidelity_samples"):
        WorldModelTrainingConfig(test_fraction=0.1, fidelity_every=1, fidelity_samples=0)


def test_the_fidelity_command_reports_the_reward_recall_on_the_dreams_frames(pong_data, pong_checkpoint, one_thread,
                                                                            capsys):
    from training.fidelity.__main__ import main

    main(["--checkpoint", str(pong_checkpoint), "--data", str(pong_data), "--test-fraction", "0.5", "--samples", "4",
          "--horizons", "1", "--events", "--device", "cpu"])
    events = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    dataset = EpisodeDataset(pong_data, game="Pong")
    rewarded = dataset.rewarded_steps(dataset.split(0.5, seed=0)[1])[0].size
    assert "reward_confusion" in events
    # read over whole episodes as a dream reads them too: every held-out transition but each episode's burn-in
    held_out = dataset.split(0.5, seed=0)[1]
    assert events["whole_episodes"]["transitions"] == events["transitions"] - 3 * len(held_out)
    assert (events["dream_reward_recall"] is None) == (rewarded == 0)
    assert events["dream_reward_recall"] is None or 0 <= events["dream_reward_recall"] <= 1
