"""World model training, imagination training and the pipeline, at toy sizes on real Atari frames."""

import dataclasses
import json
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import first_denoiser_update, pong_frame, real_breakout_data, real_pong_episode

import gym_diamond  # noqa: F401
from gym_diamond import load_checkpoint
from gym_diamond.config import tiny_world_model_config
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from gym_diamond.world_model import WorldModel
from training.agents.imagination import ImaginationConfig, ImaginationTrainer
from training.data.dataset import Episode, EpisodeDataset
from training.pipeline import Pipeline
from training.runtime.state import load_state, save_state
from training.world_model.run import train_world_model
from training.world_model.trainer import WorldModelTrainer
from training.world_model.training_config import WorldModelTrainingConfig


def test_denoiser_loss_falls_on_real_pong(pong_data):
    torch.manual_seed(0)
    model = gym_diamond.WorldModel(gym_diamond.tiny_world_model_config(num_actions=6))
    config = WorldModelTrainingConfig(batch_size=8, lr=3e-3, warmup_steps=5, rew_end_sequence_length=4)
    trainer = WorldModelTrainer(model, EpisodeDataset(pong_data, game="Pong"), config)
    losses = [trainer.denoiser_step()["denoiser_loss"] for _ in range(40)]  # the last ten: about a third of the first
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10]), (losses[:10], losses[-10:])
    scalars = trainer.rew_end_step()
    assert np.isfinite(scalars["reward_loss"]) and trainer.steps == {"denoiser": 40, "rew_end": 1}


def test_trained_checkpoint_plays_in_gym_make_and_resume_is_exact(pong_data, tmp_path):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, config=config, progress=False, log_every=1)
    # uninterrupted
    path = train_world_model("Pong", pong_data, tmp_path / "a", 4, save_every=100, **kwargs)
    # interrupted after 2 steps, then the same command again
    train_world_model("Pong", pong_data, tmp_path / "b", 2, save_every=1, **kwargs)
    with (tmp_path / "b" / "losses.csv").open("a") as f:  # logged after the last save, then killed
        f.write("3,9,9,9,9,9,9\n")
    resumed = train_world_model("Pong", pong_data, tmp_path / "b", 4, save_every=100, **kwargs)
    a, b = load_checkpoint(path), load_checkpoint(resumed)
    assert b.provenance["denoiser_steps"] == 4
    for (name, p), q in zip(a.world_model.state_dict().items(), b.world_model.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    lines = (tmp_path / "b" / "losses.csv").read_text().splitlines()
    assert lines[0].startswith("step,denoiser_loss") and [line.split(",")[0] for line in lines[1:]] == \
        ["1", "2", "3", "4"]
    env = gym.make("DiamondDream/Pong-v0", checkpoint=path)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3)
    assert any(np.array_equal(obs, ctx[-1]) for ctx in a.start_bank.frames)  # starts from real Pong contexts
    env.step(0)


def test_a_branch_starts_from_its_parents_state_and_trains_on_with_its_own_settings(pong_data, tmp_path):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, progress=False, save_every=1)
    one_run = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "one", 4, config=config, **kwargs))
    train_world_model("Pong", pong_data, tmp_path / "parent", 2, config=config, **kwargs)
    same = dataclasses.replace(config, branch_from=str(tmp_path / "parent"))
    branch = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "same", 4, config=same, **kwargs))
    for (name, p), q in zip(one_run.world_model.state_dict().items(), branch.world_model.state_dict().values(),
                            strict=True):
        assert torch.equal(p, q), name  # weights, optimizers and random streams carried over: as one run
    assert branch.provenance["branch_from"] == str(tmp_path / "parent") and one_run.provenance["branch_from"] is None
    other = dataclasses.replace(same, lr=3e-3)
    changed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "lr", 4, config=other, **kwargs))
    assert changed.provenance["denoiser_steps"] == 4 and changed.provenance["lr"] == 3e-3
    assert not all(torch.equal(p, q) for p, q in zip(one_run.world_model.parameters(),
                                                     changed.world_model.parameters(), strict=True))
    train_world_model("Pong", pong_data, tmp_path / "parent", 6, config=config, **kwargs)  # the parent goes on
    resumed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "lr", 5, config=other, **kwargs))
    assert resumed.provenance["denoiser_steps"] == 5  # from the branch's own state, not the parent's 6
    with pytest.raises(ValueError, match="branch_from"):  # a resume repeats the branch's settings
        train_world_model("Pong", pong_data, tmp_path / "lr", 6, config=dataclasses.replace(other, branch_from=None),
                          **kwargs)
    with pytest.raises(ValueError, match="no saved training state"):
        train_world_model("Pong", pong_data, tmp_path / "orphan", 2, **kwargs,
                          config=dataclasses.replace(config, branch_from=str(tmp_path / "nowhere")))


def test_a_branch_may_train_with_another_noise_distribution_but_not_another_network(pong_data, tmp_path):
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, progress=False, save_every=1)
    train_world_model("Pong", pong_data, tmp_path / "parent", 2, config=config, **kwargs)
    parent = load_checkpoint(tmp_path / "parent" / "world_model.safetensors").config.denoiser
    low = dataclasses.replace(config, branch_from=str(tmp_path / "parent"), train_sigma_loc=-1.0, train_sigma_scale=0.5)
    branch = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "low", 3, config=low, **kwargs))
    assert branch.provenance["denoiser_steps"] == 3  # the parent's 2 updates, then one of its own
    noise = branch.config.denoiser
    assert (noise.train_sigma_loc, noise.train_sigma_scale) == (-1.0, 0.5) != (parent.train_sigma_loc,
                                                                               parent.train_sigma_scale)
    assert branch.provenance["train_sigma_loc"] == -1.0
    with pytest.raises(ValueError, match="different world model config"):  # 8 context frames: another network
        train_world_model("Pong", pong_data, tmp_path / "wide", 3, **kwargs,
                          config=dataclasses.replace(low, context_length=8))


def test_a_state_saved_before_a_config_field_existed_resumes_with_its_default(pong_data, tmp_path):
    # a run saved by an earlier gym-diamond, whose sampler had no ``start``, resumes (the field takes DIAMOND's default)
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, progress=False, save_every=1, config=config)
    train_world_model("Pong", pong_data, tmp_path / "run", 2, **kwargs)
    path = tmp_path / "run" / "train_state.safetensors"
    state = load_state(path)
    del state["model_config"]["sampler"]["start"]
    save_state(path, state)
    resumed = load_checkpoint(train_world_model("Pong", pong_data, tmp_path / "run", 3, **kwargs))
    assert resumed.provenance["denoiser_steps"] == 3 and resumed.config.sampler.start == "unit"
    state = load_state(path)
    state["model_config"]["sampler"]["num_steps"] = 7  # a field with another value is still another config
    save_state(path, state)
    with pytest.raises(ValueError, match="different world model config"):
        train_world_model("Pong", pong_data, tmp_path / "run", 4, **kwargs)


def test_each_loss_log_row_is_the_mean_over_its_updates(pong_data, tmp_path):
    """With log_every 2, each row of losses_denoiser.csv is the mean of the two rows that log_every 1 writes for the
    same updates (one run's single update says little of a noisy loss)."""
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=4)
    kwargs = dict(model_preset="tiny", device="cpu", seed=3, config=config, progress=False, networks="denoiser")
    train_world_model("Pong", pong_data, tmp_path / "every", 4, log_every=1, **kwargs)
    train_world_model("Pong", pong_data, tmp_path / "pairs", 4, log_every=2, **kwargs)

    def losses(name):
        lines = (tmp_path / name / "losses_denoiser.csv").read_text().splitlines()
        column = lines[0].split(",").index("denoiser_loss")
        return [(int(line.split(",")[0]), float(line.split(",")[column])) for line in lines[1:]]

    every, pairs = losses("every"), losses("pairs")
    assert [step for step, _ in pairs] == [2, 4]
    expected = [(every[0][1] + every[1][1]) / 2, (every[2][1] + every[3][1]) / 2]
    assert [loss for _, loss in pairs] == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx([every[1][1], every[3][1]], rel=1e-3)  # the last update alone differs


def test_held_out_episodes_are_never_trained_on(pong_data):
    dataset = EpisodeDataset(pong_data, game="Pong")
    train_ids, test_ids = dataset.split(0.4, seed=0)  # the fidelity benchmark's split
    assert len(train_ids) == 1 and len(test_ids) == 1
    model = WorldModel(tiny_world_model_config(num_actions=6))
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8, rew_end_sequence_length=3,
                                                                        test_fraction=0.4))
    seen = []
    load = dataset.get_segments

    def spy(*args, **kwargs):
        segment = load(*args, **kwargs)
        seen.extend(segment.episode_ids.tolist())
        return segment

    dataset.get_segments = spy
    for _ in range(3):
        trainer.denoiser_step(), trainer.rew_end_step()
    assert set(seen) == set(train_ids.tolist())
    with pytest.raises(ValueError, match="test_fraction"):
        WorldModelTrainingConfig(test_fraction=1.0)


def test_training_rejects_bad_input(pong_data, tmp_path):
    with pytest.raises(ValueError, match="Pongg.*Pong"):
        train_world_model("Pongg", pong_data, tmp_path / "x", 1, model_preset="tiny", progress=False)
    with pytest.raises(ValueError, match="Breakout|Pong"):
        train_world_model("Breakout", pong_data, tmp_path / "x", 1, model_preset="tiny", progress=False)
    with pytest.raises(ValueError, match="empty"):
        train_world_model("Pong", tmp_path / "empty", tmp_path / "x", 1, model_preset="tiny", progress=False)


@pytest.mark.slow
def test_actor_critic_learns_the_paying_action_in_imagination(tmp_path, one_thread, bandit_path):
    ckpt = load_checkpoint(bandit_path)
    dataset = EpisodeDataset(tmp_path / "data", game="Bandit")
    rng = np.random.default_rng(0)
    z = np.zeros(20, dtype=bool)
    dataset.append(Episode(rng.integers(0, 256, (21, 64, 64, 3), dtype=np.uint8), rng.integers(0, 3, 20),
                           np.zeros(20, np.float32), z, z.copy(), z.copy()))
    torch.manual_seed(0)
    ac = ActorCritic(ActorCriticConfig(3, channels=(4, 4, 8, 8), lstm_dim=16))
    trainer = ImaginationTrainer(ckpt.world_model, ac, dataset, ImaginationConfig(
        horizon=4, backup_every=4, batch_size=8, num_batches_to_preload=4, lr=1e-2, warmup_steps=1), seed=0)

    def p_paying():
        with torch.no_grad():
            logits, _, _ = ac(trainer.env.frames[:, -1], ac.initial_state(8))
        return logits.softmax(-1)[:, 1].mean().item()

    scalars = trainer.step()  # the first update has learning rate 0 (DIAMOND's warm-up)
    before = p_paying()
    for _ in range(25):  # p(paying) ~0.8 after 10 updates, ~0.95 after 20, ~0.98 after 30
        scalars = trainer.step()
    after = p_paying()
    assert abs(before - 1 / 3) < 0.05 and after > 0.8, (before, after)
    assert scalars["imagined_reward_per_step"] > 0.6


def test_pipeline_resumes_without_collecting_again(tmp_path, one_thread):
    out = tmp_path / "run"
    first = Pipeline("Breakout", out, "micro", device="cpu", progress=False)
    first.run(stop_after_epochs=1)  # as if killed after the first epoch
    progress = json.loads((out / "progress.json").read_text())
    assert progress["epoch"] == 1 and progress["collected_epochs"] == 1 and progress["collect_epochs"] == 2
    steps_after_first = progress["env_steps"]
    assert steps_after_first == 140 + 20 and not (out / "report.json").exists()  # the initial 140, epoch 1's 20
    assert EpisodeDataset(out / "data").num_steps == 160  # the unfinished episode is stored too
    report = Pipeline("Breakout", out, "micro", device="cpu", progress=False).run()
    assert report["epochs"] == 2
    assert report["env_steps"] == steps_after_first + 20  # epoch 2 collected its 20 steps, epoch 1 was not redone
    assert report["dataset_steps"] == 180
    assert report["world_model_updates"] == {"denoiser": 4, "rew_end": 4}
    assert report["actor_critic_updates"] == 2
    assert set(report["seconds_per_stage"]) == {"collect", "world_model", "actor_critic", "evaluate"}
    assert len(report["final_evaluation"]["returns"]) == 1
    assert load_checkpoint(report["world_model"]).game == "Breakout"
    for stage, epochs in [("collect", ["1", "2"]), ("world_model", ["1", "2"]), ("actor_critic", ["1", "2"]),
                          ("evaluate", ["2"])]:
        rows = (out / f"{stage}.csv").read_text().splitlines()
        assert rows[0].startswith("epoch,") and [r.split(",")[0] for r in rows[1:]] == epochs, stage
    with pytest.raises(ValueError, match="other settings"):
        Pipeline("Breakout", out, "micro", device="cpu", seed=1, progress=False)


def _interrupt_at(monkeypatch, cls: type, method: str, call: int, terminate: bool = False) -> None:
    """``cls.method`` raises KeyboardInterrupt on its ``call``-th call, as if the run were killed there; or, with
    ``terminate``, the process gets SIGTERM in the middle of that call (``kill PID``)."""
    original, calls = getattr(cls, method), []

    def counted(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == call:
            if not terminate:
                raise KeyboardInterrupt
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, counted)


def _csv_rows(path) -> list[dict[str, str]]:
    """A stage CSV's rows without its timing columns (which differ between two runs of the same updates)."""
    header, *rows = path.read_text().splitlines()
    names = header.split(",")
    return [{k: v for k, v in zip(names, row.split(","), strict=True) if "second" not in k} for row in rows]


def test_pipeline_killed_inside_an_epoch_resumes_from_the_update_it_saved(tmp_path, one_thread, monkeypatch):
    """A run killed mid-stage loses no saved update: the world model it ends with is the uninterrupted one's,
    and every stage's row holds the means over the whole epoch."""
    overrides = ["denoiser_steps_first_epoch=5", "actor_critic_steps_first_epoch=4"]

    def pipeline(out, **kwargs):
        return Pipeline("Breakout", out, "micro", device="cpu", progress=False, preset_overrides=overrides, **kwargs)

    straight = pipeline(tmp_path / "straight")
    straight.run(stop_after_epochs=1)
    out, handler = tmp_path / "killed", signal.getsignal(signal.SIGTERM)
    with monkeypatch.context() as patch:  # SIGTERM during the 4th denoiser update: it ends, then the run saves
        _interrupt_at(patch, WorldModelTrainer, "denoiser_step", 4, terminate=True)
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            pipeline(out).run()
    progress = json.loads((out / "progress.json").read_text())
    assert progress["epoch"] == 0 and progress["partial"]["done"] == {"denoiser": 4}
    assert signal.getsignal(signal.SIGTERM) is handler
    with monkeypatch.context() as patch:  # resumed, saved after every update, killed at its 3rd actor-critic one
        _interrupt_at(patch, ImaginationTrainer, "step", 3)
        with pytest.raises(KeyboardInterrupt):
            pipeline(out, save_minutes=0).run()
    progress = json.loads((out / "progress.json").read_text())
    assert progress["partial"]["done"] == {"denoiser": 5, "rew_end": 2, "actor_critic": 2}
    resumed = pipeline(out, save_minutes=0)
    resumed.run(stop_after_epochs=1)
    for name, value in straight.world_model.state_dict().items():
        torch.testing.assert_close(resumed.world_model.state_dict()[name], value, rtol=0, atol=0, msg=name)
    assert resumed.wm_trainer.steps == straight.wm_trainer.steps == {"denoiser": 5, "rew_end": 2}
    assert resumed.ac_trainer.steps == straight.ac_trainer.steps == 4
    assert _csv_rows(out / "world_model.csv") == _csv_rows(tmp_path / "straight" / "world_model.csv")
    assert [row["epoch"] for row in _csv_rows(out / "actor_critic.csv")] == ["1"]
    progress = json.loads((out / "progress.json").read_text())
    assert progress["epoch"] == 1 and "partial" not in progress
    with pytest.raises(ValueError, match="save_minutes"):
        pipeline(tmp_path / "other", save_minutes=-1)


def test_pipeline_command_stopped_by_sigterm_says_how_to_continue(tmp_path, one_thread, monkeypatch, capsys):
    from training.pipeline import main

    out = tmp_path / "run"
    _interrupt_at(monkeypatch, WorldModelTrainer, "denoiser_step", 2, terminate=True)
    with pytest.raises(SystemExit) as stopped:
        main(["--game", "Breakout", "--preset", "micro", "--out", str(out), "--device", "cpu"])
    assert stopped.value.code == 130
    assert f"interrupted: {out} holds the run as it was last saved" in capsys.readouterr().err
    assert json.loads((out / "progress.json").read_text())["partial"]["done"] == {"denoiser": 2}


@pytest.fixture(params=["aot_eager", "inductor"])
def compile_backend(request, monkeypatch):
    """Which torch.compile backend ``compile=True`` uses here, and which modules it compiled.

    inductor's C++ code generation for these backward passes takes about 4 minutes on a cold 2-core
    CPU, so on CPU the test uses aot_eager: the same dynamo capture and AOT autograd of our networks,
    run by eager kernels. On a GPU it uses inductor, the real thing.
    """
    if request.param == "inductor" and not torch.cuda.is_available():
        pytest.skip("inductor training is checked on CUDA; on CPU its compile time is minutes (aot_eager runs)")
    compiled, compile_module = [], torch.nn.Module.compile

    def recording(module, **kwargs):
        backend = torch._dynamo.lookup_backend(request.param)

        def record(graph, inputs):
            compiled.append(type(module).__name__)
            return backend(graph, inputs)

        compile_module(module, backend=record, **kwargs)

    monkeypatch.setattr(torch.nn.Module, "compile", recording)
    return torch.device("cuda" if request.param == "inductor" else "cpu"), compiled


def test_compiled_training_matches_eager(pong_data, compile_backend):
    """compile=True trains the same networks: the same losses, update for update, up to float reordering."""
    device, compiled = compile_backend
    dataset = EpisodeDataset(pong_data, game="Pong")

    def train(compile: bool) -> list[dict[str, float]]:
        torch._dynamo.reset()
        torch.manual_seed(0)
        model = WorldModel(tiny_world_model_config(num_actions=6)).to(device)
        wm = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(
            batch_size=2, rew_end_sequence_length=4, warmup_steps=1, lr=1e-3, compile=compile))
        scalars = [{**wm.denoiser_step(), **wm.rew_end_step()} for _ in range(2)]
        ac = ActorCritic(ActorCriticConfig(6, channels=(4, 4, 8, 8), lstm_dim=16)).to(device)
        imagination = ImaginationTrainer(model, ac, dataset, ImaginationConfig(
            horizon=2, backup_every=2, batch_size=2, num_batches_to_preload=2, compile=compile))
        return scalars + [imagination.step()]

    eager = train(False)
    assert not compiled
    got = train(True)
    assert {"UNet", "RewEndModel", "ActorCritic"} <= set(compiled)  # each network ran as a compiled graph
    assert eager[1]["denoiser_loss"] != eager[0]["denoiser_loss"]  # the first update changed the networks
    for e, c in zip(eager, got, strict=True):
        assert set(e) == set(c)
        for name in e:
            assert c[name] == pytest.approx(e[name], rel=1e-3, abs=1e-5), name


def test_speed_switches_reach_the_trainers_from_the_command_lines(monkeypatch, tmp_path):
    import training.pipeline
    import training.world_model.__main__ as world_model_command

    seen = {}
    monkeypatch.setattr(world_model_command, "train_world_model",
                        lambda *args, config, **kwargs: seen.setdefault("world_model", config) and tmp_path)
    world_model_command.main(["--game", "Pong", "--data", str(tmp_path), "--out", "o", "--steps", "1", "--precision",
                              "bf16", "--compile"])
    assert seen["world_model"].precision == "bf16" and seen["world_model"].compile

    class Recorder:
        def __init__(self, *args, **kwargs):
            seen["pipeline"] = kwargs

        def run(self):
            raise SystemExit  # what it was given is all this test needs

    monkeypatch.setattr(training.pipeline, "Pipeline", Recorder)
    with pytest.raises(SystemExit):
        training.pipeline.main(["--precision", "bf16", "--compile"])
    assert seen["pipeline"]["precision"] == "bf16" and seen["pipeline"]["compile"] is True
    with pytest.raises(SystemExit):
        training.pipeline.main([])
    assert seen["pipeline"]["precision"] is None and seen["pipeline"]["compile"] is False  # by capability
    with pytest.raises(SystemExit):
        training.pipeline.main(["--precision", "fp16"])  # argparse rejects it


def test_pipeline_passes_its_speed_switches_to_both_trainers(tmp_path, one_thread):
    pipeline = Pipeline("Breakout", tmp_path / "run", "micro", device="cpu", progress=False, precision="bf16")
    pipeline._collect(1)
    pipeline._trainers()
    assert pipeline.wm_trainer.config.precision == pipeline.ac_trainer.config.precision == "bf16"
    assert pipeline.world_model.acceleration.precision == "bf16"  # the dream the agent learns in
    assert not pipeline.wm_trainer.config.compile and not pipeline.ac_trainer.config.compile


def test_training_state_from_before_the_diamond_exact_networks_says_what_to_do(pong_data):
    dataset = EpisodeDataset(pong_data, game="Pong")
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=3)
    state = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset, config).state_dict()
    for part in (state["model_config"]["denoiser"]["unet"], state["model_config"]["rew_end"]):
        del part["attention_residual"]  # what gym-diamond 0.1 wrote
    del state["model_config"]["rew_end"]["norm_out"], state["model_config"]["sampler"]["quantization"]
    fresh = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset, config)
    with pytest.raises(ValueError, match="gym-diamond 0.1.*still loads.*another --out"):
        fresh.load_state_dict(state)


def test_training_state_of_the_earlier_recipe_says_what_to_do(pong_data):
    dataset = EpisodeDataset(pong_data, game="Pong")
    config = WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=3)
    state = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset, config).state_dict()
    del state["recipe"]  # what gym-diamond wrote before it trained as DIAMOND's trainer does
    fresh = WorldModelTrainer(WorldModel(tiny_world_model_config(num_actions=6)), dataset, config)
    with pytest.raises(ValueError, match="earlier gym-diamond.*still loads.*another --out"):
        fresh.load_state_dict(state)


def test_pipeline_shows_progress_inside_every_stage(tmp_path, capsys, one_thread):
    Pipeline("Breakout", tmp_path / "run", "micro", device="cpu", progress=True).run()
    err = capsys.readouterr().err
    for stage in ("DIAMOND Breakout", "collect (real game)", "epoch 1: world model", "epoch 2: actor-critic",
                  "evaluate Breakout (real game)"):
        assert stage in err, stage
    assert "2/2 [" in err  # the world-model stage bar counted its 2 updates


def test_context_noise_perturbs_only_the_context_and_is_off_by_default(pong_data, monkeypatch):
    dataset = EpisodeDataset(pong_data, game="Pong")

    def first_update(context_noise: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        frames, weights = first_denoiser_update(dataset, monkeypatch, batch_size=4, context_noise=context_noise)
        return frames[:, 4:], frames[:, :4], weights

    clean_next, clean_context, clean_weights = first_update(0.0)
    noisy_next, noisy_context, noisy_weights = first_update(0.3)
    assert torch.equal(clean_next, noisy_next)  # the target frames are never noised
    assert clean_context.min() >= -1 and clean_context.max() <= 1  # real frames, as they are
    difference = (noisy_context - clean_context).flatten(1).std(1)
    assert (difference > 0).all() and (difference < 0.3 * 1.1).all()  # a level of at most 0.3 per sample
    assert not torch.equal(noisy_weights, clean_weights)  # the update learnt from the noisy context
    with pytest.raises(ValueError, match="context_noise"):
        WorldModelTrainingConfig(context_noise=-0.1)


def test_reward_model_input_noise_perturbs_the_frames_it_reads_in_training_and_is_off_by_default(pong_data,
                                                                                                  monkeypatch):
    dataset = EpisodeDataset(pong_data, game="Pong")

    def first_update(level: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        torch.manual_seed(0)
        model = WorldModel(tiny_world_model_config(num_actions=6))
        trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=4, warmup_steps=0,
                                                                             rew_end_input_noise=level))
        seen = {}
        forward = model.rew_end.forward

        def spy(obs, actions, next_obs, *args, **kwargs):
            seen["obs"], seen["next_obs"] = obs.detach().clone(), next_obs.detach().clone()
            return forward(obs, actions, next_obs, *args, **kwargs)

        monkeypatch.setattr(model.rew_end, "forward", spy)
        trainer.rew_end_step()
        weights = torch.cat([p.detach().flatten() for p in model.rew_end.parameters()])
        return seen["obs"], seen["next_obs"], weights

    clean_obs, clean_next, clean_weights = first_update(0.0)
    noisy_obs, noisy_next, noisy_weights = first_update(0.2)
    assert clean_obs.min() >= -1 and clean_obs.max() <= 1  # real frames, as they are
    assert torch.equal(noisy_obs[:, 1:], noisy_next[:, :-1])  # one noisy frame, read as next frame then as frame
    difference = (noisy_obs - clean_obs).flatten(1).std(1)
    assert (difference > 0).all() and (difference < 0.2 * 1.1).all()  # a level of at most 0.2 per sequence
    assert not torch.equal(noisy_weights, clean_weights)
    assert "rew_end_input_noise" not in WorldModelTrainingConfig().run_settings()  # older runs resume
    with pytest.raises(ValueError, match="rew_end_input_noise"):
        WorldModelTrainingConfig(rew_end_input_noise=-0.1)


def test_termination_oversampling_and_a_reward_model_fine_tuning(tmp_path, monkeypatch):
    ended = real_pong_episode(60, 0)
    ended.terminated[-1] = True
    data = tmp_path / "data"
    dataset = EpisodeDataset(data, game="Pong")
    dataset.append(ended)
    dataset.append(real_pong_episode(60, 1))  # cut short: never oversampled
    model = WorldModel(tiny_world_model_config(num_actions=6))
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8, termination_oversampling=0.5))
    seen = {}
    loss = model.rew_end.loss

    def spy(*batch):
        seen["terminated"] = batch[4].clone()
        return loss(*batch)

    monkeypatch.setattr(model.rew_end, "loss", spy)
    trainer.rew_end_step()
    assert seen["terminated"].shape == (8, 18)  # 19 frames, 18 transitions, as DIAMOND's
    assert seen["terminated"][:4].any(1).all()  # half the batch holds the termination
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8, termination_oversampling=0.5,
                                                                         termination_lead_in=12))
    for _ in range(3):
        trainer.rew_end_step()
        assert (seen["terminated"][:4].float().argmax(1) >= 12).all()  # 12 transitions or more lead to it
    with pytest.raises(ValueError, match="termination_oversampling"):
        WorldModelTrainingConfig(termination_oversampling=1.0)
    with pytest.raises(ValueError, match="termination_lead_in"):
        WorldModelTrainingConfig(termination_oversampling=0.5, termination_lead_in=18)  # 18 transitions a sequence

    ended.rewards[:] = 0
    ended.rewards[30] = 1.0  # one rewarded transition in the whole dataset
    rewards_data = EpisodeDataset(tmp_path / "rewards", game="Pong")
    rewards_data.append(ended)
    trainer = WorldModelTrainer(model, rewards_data, WorldModelTrainingConfig(batch_size=8, reward_oversampling=0.5))
    monkeypatch.setattr(model.rew_end, "loss", lambda *batch: seen.update(rewards=batch[3].clone()) or loss(*batch))
    trainer.rew_end_step()
    assert (seen["rewards"][:4] == 1).any(1).all()  # half the batch holds the one reward
    with pytest.raises(ValueError, match="reward_oversampling"):
        WorldModelTrainingConfig(termination_oversampling=0.5, reward_oversampling=0.5)

    trainer = WorldModelTrainer(model, rewards_data, WorldModelTrainingConfig(batch_size=8,
                                                                             denoiser_reward_oversampling=0.5))
    get_segments = rewards_data.get_segments
    monkeypatch.setattr(rewards_data, "get_segments",
                        lambda ids, starts, n, **kw: seen.update(starts=starts.copy()) or get_segments(ids, starts, n,
                                                                                                       **kw))
    trainer.denoiser_step()
    L = model.config.denoiser.context_length
    assert (seen["starts"][:4] + L == 31).all()  # half the batch's target is the frame after the one reward
    assert trainer.steps["denoiser"] == 1
    with pytest.raises(ValueError, match="denoiser_reward_oversampling"):
        WorldModelTrainingConfig(denoiser_reward_oversampling=1.0)

    out = tmp_path / "run"
    first = train_world_model("Pong", data, out, 1, model_preset="tiny", progress=False)
    before = load_checkpoint(first).world_model
    config = WorldModelTrainingConfig(batch_size=4, termination_oversampling=0.25)
    tuned = train_world_model("Pong", data, out, 3, model_preset="tiny", progress=False, config=config,
                              networks="rew_end")
    after = load_checkpoint(tuned)
    for name, weight in before.denoiser.state_dict().items():
        assert torch.equal(after.world_model.denoiser.state_dict()[name], weight), name  # left as it was
    assert any(not torch.equal(after.world_model.rew_end.state_dict()[n], w)
               for n, w in before.rew_end.state_dict().items())
    provenance = after.provenance
    assert (provenance["denoiser_steps"], provenance["rew_end_steps"]) == (1, 3)
    assert provenance["termination_oversampling"] == 0.25
    assert len((out / "losses_rew_end.csv").read_text().splitlines()) == 2  # header and the row of step 3
    denoised = load_checkpoint(train_world_model("Pong", data, out, 3, model_preset="tiny", progress=False,
                                                 networks="denoiser"))
    for name, weight in after.world_model.rew_end.state_dict().items():
        assert torch.equal(denoised.world_model.rew_end.state_dict()[name], weight), name  # left as it was
    assert (denoised.provenance["denoiser_steps"], denoised.provenance["rew_end_steps"]) == (3, 3)
    assert (out / "losses_denoiser.csv").exists()
    with pytest.raises(ValueError, match="networks"):
        train_world_model("Pong", data, out, 3, model_preset="tiny", networks="reward")


def pong_rally(root, xs: list) -> EpisodeDataset:
    """A Pong dataset of one episode whose frames show the ball at each column of ``xs`` (None: no ball)."""
    T = len(xs) - 1
    dataset = EpisodeDataset(root, game="Pong")
    dataset.append(Episode(np.stack([pong_frame(x) for x in xs]), np.zeros(T, np.int64), np.zeros(T, np.float32),
                           np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool)))
    return dataset


def test_return_oversampling_trains_on_the_frames_after_the_ball_reaches_the_paddle(tmp_path, monkeypatch):
    # a return (the ball at 50 and 54, then back) and a miss (at 52, then through), among frames far from the paddle
    xs = [10, 14, 18, 22, 26, 30, 34, 38, 42, 46, 50, 54, 50, 46, 42, 38, 34, 30, 26, 22, 18, 22, 26, 30, 34, 38,
          42, 46, 52, 57, 61, None, None, None, None, None, None]
    dataset = pong_rally(tmp_path / "rally", xs)
    model = WorldModel(tiny_world_model_config(num_actions=6))
    L = model.config.denoiser.context_length
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8,
                                                                         denoiser_return_oversampling=0.5))
    assert sorted(trainer.paddle_moments[:, 1].tolist()) == [10, 11, 28]  # two frames before a return, one a miss
    seen = {}
    get_segments = dataset.get_segments
    monkeypatch.setattr(dataset, "get_segments",
                        lambda ids, starts, n, **kw: seen.update(starts=starts.copy()) or get_segments(ids, starts, n,
                                                                                                       **kw))
    after = set()
    for _ in range(5):
        trainer.denoiser_step()
        targets = seen["starts"] + L  # the first target frame of each sample
        gaps = targets[:4, None] - np.array([10, 11, 28])[None]
        assert ((gaps >= 1) & (gaps <= 4)).any(axis=1).all()  # half the batch predicts a frame just after a moment
        after |= set(targets[:4].tolist())
    assert len(after) > 3  # the moments and the frames after them are drawn, not one fixed frame
    assert trainer.config.run_settings()["denoiser_return_oversampling"] == 0.5
    assert "denoiser_return_oversampling" not in WorldModelTrainingConfig().run_settings()  # older runs resume
    with pytest.raises(ValueError, match="denoiser_return_oversampling"):
        WorldModelTrainingConfig(denoiser_reward_oversampling=0.5, denoiser_return_oversampling=0.5)
    still = EpisodeDataset(tmp_path / "still", game="Pong")
    still.append(Episode(np.stack([pong_frame(20)] * 12), np.zeros(11, np.int64), np.zeros(11, np.float32),
                         np.zeros(11, bool), np.zeros(11, bool), np.zeros(11, bool)))
    with pytest.raises(ValueError, match="nothing for denoiser_return_oversampling"):
        WorldModelTrainer(model, still, WorldModelTrainingConfig(batch_size=8,
                                                                 denoiser_return_oversampling=0.5)).denoiser_step()


def test_serve_oversampling_trains_on_the_frame_where_the_ball_comes_back(tmp_path, monkeypatch):
    # the ball in flight, away for 6 frames (a point), served at frame 14, away again and served at frame 27
    xs = [30, 34, 38, 42, 46, 50, 54, None, None, None, None, None, None, None, 32, 36, 40, 44, 48, 52, None, None,
          None, None, None, None, None, 32, 36, 40]
    T = len(xs) - 1
    rewards = np.zeros(T, np.float32)
    rewards[20] = 1.0  # the point before the second serve
    dataset = EpisodeDataset(tmp_path / "points", game="Pong")
    dataset.append(Episode(np.stack([pong_frame(x) for x in xs]), np.zeros(T, np.int64), rewards,
                           np.zeros(T, bool), np.zeros(T, bool), np.zeros(T, bool)))
    model = WorldModel(tiny_world_model_config(num_actions=6))
    L = model.config.denoiser.context_length
    config = WorldModelTrainingConfig(batch_size=8, denoiser_reward_oversampling=0.25, denoiser_serve_oversampling=0.5)
    trainer = WorldModelTrainer(model, dataset, config)
    assert trainer.serve_moments[:, 1].tolist() == [13, 26]  # the transitions into the serves
    seen = {}
    get_segments = dataset.get_segments
    monkeypatch.setattr(dataset, "get_segments",
                        lambda ids, starts, n, **kw: seen.update(starts=starts.copy()) or get_segments(ids, starts, n,
                                                                                                       **kw))
    served = []
    for _ in range(6):
        trainer.denoiser_step()
        targets = (seen["starts"] + L).tolist()  # the first target frame of each sample
        assert targets[:2] == [21, 21]  # the rewarded samples first,
        assert set(targets[2:6]) <= {14, 27}  # then half the batch predicts a serve
        served += targets[2:6]
    assert set(served) == {14, 27}
    assert trainer.config.run_settings()["denoiser_serve_oversampling"] == 0.5
    assert "denoiser_serve_oversampling" not in WorldModelTrainingConfig().run_settings()  # older runs resume
    for shares in ({"denoiser_serve_oversampling": 1.0}, {"denoiser_serve_oversampling": -0.1},
                   {"denoiser_return_oversampling": 0.3, "denoiser_reward_oversampling": 0.2,
                    "denoiser_serve_oversampling": 0.5}):
        with pytest.raises(ValueError, match="denoiser_serve_oversampling"):
            WorldModelTrainingConfig(**shares)
    rally = EpisodeDataset(tmp_path / "rally", game="Pong")
    rally.append(Episode(np.stack([pong_frame(20 + i) for i in range(12)]), np.zeros(11, np.int64),
                         np.zeros(11, np.float32), np.zeros(11, bool), np.zeros(11, bool), np.zeros(11, bool)))
    with pytest.raises(ValueError, match="nothing for denoiser_serve_oversampling"):
        WorldModelTrainer(model, rally, WorldModelTrainingConfig(batch_size=8,
                                                                 denoiser_serve_oversampling=0.5)).denoiser_step()


def test_breakouts_return_oversampling_reaches_the_slower_bounce(tmp_path, monkeypatch):
    # Breakout's ball takes up to 8 frames to come back off the paddle (Pong's 4): the targets span them
    dataset = real_breakout_data(tmp_path / "breakout", lives=2)
    model = WorldModel(tiny_world_model_config(num_actions=4))
    L = model.config.denoiser.context_length
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=64,
                                                                         denoiser_return_oversampling=0.5))
    moments = {tuple(m) for m in trainer.paddle_moments.tolist()}
    seen = {}
    get_segments = dataset.get_segments
    monkeypatch.setattr(dataset, "get_segments", lambda ids, starts, n, **kw: seen.update(
        ids=ids.copy(), starts=starts.copy()) or get_segments(ids, starts, n, **kw))
    trainer.denoiser_step()
    gaps = [min((t - s for e, s in moments if e == episode and 1 <= t - s <= 8), default=None)
            for episode, t in zip(seen["ids"][:32].tolist(), (seen["starts"][:32] + L).tolist(), strict=True)]
    assert None not in gaps  # each oversampled target follows a moment by 1 to 8 frames
    assert max(gaps) > 4  # and some lie past Pong's 4



def test_opponent_oversampling_trains_on_the_frames_after_the_ball_comes_to_the_opponent(tmp_path, monkeypatch):
    # the ball comes left from 40 to 12 (towards the opponent's paddle at column 8), goes back right, then is lost
    xs = [40, 36, 32, 28, 24, 20, 16, 12, 16, 20, 24, 28, 32, 36, 40, None, None, None, None, None]
    dataset = pong_rally(tmp_path / "rally", xs)
    model = WorldModel(tiny_world_model_config(num_actions=6))
    L = model.config.denoiser.context_length
    trainer = WorldModelTrainer(model, dataset, WorldModelTrainingConfig(batch_size=8,
                                                                         denoiser_opponent_oversampling=0.5))
    assert L <= 4  # so the first moment has its context in the episode
    # the ball 2 to 24 columns from the paddle's line, coming left: at 28, 24, 20, 16, 12 (not 32, nor on its way back)
    assert trainer.opponent_moments[:, 1].tolist() == [3, 4, 5, 6, 7]
    seen = {}
    get_segments = dataset.get_segments
    monkeypatch.setattr(dataset, "get_segments",
                        lambda ids, starts, n, **kw: seen.update(starts=starts.copy()) or get_segments(ids, starts, n,
                                                                                                       **kw))
    for _ in range(4):
        trainer.denoiser_step()
        targets = seen["starts"][:4] + L  # the first target frame of half the batch
        assert ((targets >= 4) & (targets <= 11)).all()  # 1 to 4 frames after a moment
    assert trainer.config.run_settings()["denoiser_opponent_oversampling"] == 0.5
    assert "denoiser_opponent_oversampling" not in WorldModelTrainingConfig().run_settings()  # older runs resume
    with pytest.raises(ValueError, match="denoiser_opponent_oversampling"):
        WorldModelTrainingConfig(denoiser_serve_oversampling=0.5, denoiser_opponent_oversampling=0.5)
    breakout = EpisodeDataset(tmp_path / "breakout", game="Breakout")
    breakout.append(Episode(np.zeros((12, 64, 64, 3), np.uint8), np.zeros(11, np.int64), np.zeros(11, np.float32),
                            np.zeros(11, bool), np.zeros(11, bool), np.zeros(11, bool)))
    with pytest.raises(ValueError, match=r"where the game has one \(Pong\), not in Breakout"):
        WorldModelTrainer(model, breakout, WorldModelTrainingConfig(
            batch_size=8, denoiser_opponent_oversampling=0.5)).denoiser_step()
