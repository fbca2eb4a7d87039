"""DIAMOND's schedule and imagination, piece by piece (seconds): the presets, the initial collection's
stopping rule, unfinished episodes that are stored and extended, dreams that go on across updates and
are truncated after ``horizon`` steps of their own, the LSTM burn-in with gradient after an episode ends,
start contexts preloaded in groups, the dream's precision, and run folders of an earlier schedule.

DIAMOND's values are those of its ``config/trainer.yaml``; its code is ``src/trainer.py``,
``src/envs/world_model_env.py`` and ``src/coroutines/env_loop.py``.
"""

import csv
import dataclasses
import json

import numpy as np
import pytest
import torch

from gym_diamond import WorldModel, tiny_world_model_config, to_model_frames
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.imagination import EnvLoop, PreloadedStarts, WorldModelEnv
from training.data.collect import Collector
from training.data.dataset import Episode, EpisodeDataset
from training.data.policies import RandomAgent
from training.data.sampling import BatchSampler
from training.pipeline import (
    Pipeline,
    RunFolderError,
    collect_initial_dataset,
    main,
    minority_reward_count,
    reward_sign_counts,
)
from training.presets import PRESETS


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_episode(rng: np.random.Generator, length: int, rewards: np.ndarray | None = None) -> Episode:
    z = np.zeros(length, dtype=bool)
    rewards = np.zeros(length, np.float32) if rewards is None else rewards.astype(np.float32)
    return Episode(rng.integers(0, 256, (length + 1, 64, 64, 3), dtype=np.uint8), rng.integers(0, 6, length),
                   rewards, z, z.copy(), z.copy())


@pytest.fixture
def dataset(tmp_path) -> EpisodeDataset:
    data = EpisodeDataset(tmp_path / "data", game="Pong")
    rng = np.random.default_rng(0)
    for length in (2, 9, 14, 6, 11):
        data.append(random_episode(rng, length))
    return data


@pytest.fixture
def world_model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(tiny_world_model_config(num_actions=6)).eval()


# ----------------------------------------------------------------------------------------------- schedule


def test_the_paper_preset_is_diamonds_trainer_config():
    p = PRESETS["paper"]
    assert (p.total_env_steps, p.initial_collect_min_steps, p.initial_collect_max_steps,
            p.initial_collect_threshold_rew, p.collect_steps_per_epoch, p.epsilon, p.final_epochs) == \
        (100_000, 5000, 10_000, 10, 100, 0.01, 50)
    assert [p.steps_of(n, 1) for n in ("denoiser", "rew_end", "actor_critic")] == [10_000, 10_000, 5000]
    assert [p.steps_of(n, 2) for n in ("denoiser", "rew_end", "actor_critic")] == [400, 400, 400]
    wm, im = p.world_model_training, p.imagination
    assert (wm.batch_size, wm.rew_end_sequence_length, wm.sample_weights) == (32, 19, (0.1, 0.1, 0.1, 0.7))
    assert (im.horizon, im.backup_every, im.batch_size, im.num_batches_to_preload) == (15, 15, 32, 256)
    assert im.sample_weights == wm.sample_weights and (wm.lr, im.lr) == (1e-4, 1e-4)
    assert (p.actor_critic.channels, p.actor_critic.lstm_dim) == ((32, 32, 64, 64), 512)
    assert (p.eval_every, p.eval_episodes, p.final_eval_episodes) == (10, 4, 100)
    # Trainer.run: (100,000 - initial) / 100 collecting epochs, then 50 that only train
    assert p.epochs(5000) == 950 + 50 and p.epochs(6300) == 937 + 50 and p.collect_epochs(10_000) == 900
    for name, preset in PRESETS.items():  # every preset's schedule holds together
        assert preset.epochs(preset.initial_collect_min_steps) >= 1, name


def test_a_preset_composes_the_trainers_configs_and_each_default_is_written_once():
    from training.agents.dream_actor_critic import DreamTrainingSettings

    micro = PRESETS["micro"]
    assert micro.actor_critic.num_actions is None  # a size for any game
    assert micro.actor_critic.for_actions(6) == ActorCriticConfig(6, channels=(4, 4, 4, 4), lstm_dim=8)
    with pytest.raises(ValueError, match="for_actions"):
        ActorCritic(micro.actor_critic)
    settings = micro.to_dict()  # a run's config.json: what it trains, not how fast
    assert settings["world_model_training"]["batch_size"] == 2 and "precision" not in settings["world_model_training"]
    assert settings["imagination"]["horizon"] == 3 and "compile" not in settings["imagination"]
    assert "num_actions" not in settings["actor_critic"] and settings["actor_critic"]["lstm_dim"] == 8
    default = ActorCriticConfig(num_actions=3)
    assert (DreamTrainingSettings(updates=1).channels, DreamTrainingSettings(updates=1).lstm_dim) == \
        (default.channels, default.lstm_dim) == (PRESETS["paper"].actor_critic.channels, 512)


# the micro preset as run folders recorded it before presets composed the trainers' configs
MICRO_BEFORE = {
    "world_model": "tiny", "actor_critic_channels": [4, 4, 4, 4], "actor_critic_lstm_dim": 8, "total_env_steps": 180,
    "initial_collect_min_steps": 140, "initial_collect_max_steps": 140, "initial_collect_threshold_rew": 0,
    "collect_steps_per_epoch": 20, "epsilon": 0.01, "final_epochs": 0, "denoiser_steps_first_epoch": 2,
    "denoiser_steps_per_epoch": 2, "rew_end_steps_first_epoch": 2, "rew_end_steps_per_epoch": 2,
    "actor_critic_steps_first_epoch": 1, "actor_critic_steps_per_epoch": 1, "batch_size": 2,
    "rew_end_sequence_length": 5, "sample_weights": [0.1, 0.1, 0.1, 0.7], "horizon": 3, "backup_every": 3,
    "imagination_batch_size": 2, "num_batches_to_preload": 2, "eval_every": 0, "eval_episodes": 4,
    "final_eval_episodes": 1, "save_every": 1}


def test_a_run_recorded_before_presets_composed_configs_resumes(tmp_path):
    run = {"game": "Breakout", "preset": "micro", "seed": 0, "schedule": 2}
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({**run, **MICRO_BEFORE}))
    Pipeline("Breakout", out, "micro", device="cpu", progress=False).folder.close()
    assert json.loads((out / "config.json").read_text()) == {**run, **PRESETS["micro"].to_dict()}  # today's layout
    other = tmp_path / "other"  # a run of other settings in the old layout stays refused
    other.mkdir()
    (other / "config.json").write_text(json.dumps({**run, **MICRO_BEFORE, "batch_size": 4}))
    with pytest.raises(ValueError, match="other settings"):
        Pipeline("Breakout", other, "micro", device="cpu", progress=False)


def test_a_preset_may_set_the_dreams_denoising_steps_and_records_them_only_then(tmp_path):
    micro = PRESETS["micro"]
    assert "denoising_steps" not in micro.to_dict()  # the model's own: config.json as before the option
    assert micro.world_model_config(3).sampler.num_steps == 3  # DIAMOND's
    one_step = dataclasses.replace(micro, denoising_steps=1)
    assert one_step.to_dict()["denoising_steps"] == 1 and one_step.world_model_config(3).sampler.num_steps == 1
    pipeline = Pipeline("Breakout", tmp_path / "run", one_step, device="cpu", progress=False)
    pipeline.folder.close()
    assert pipeline.world_model.config.sampler.num_steps == 1  # the dream the agent learns in, and the export
    with pytest.raises(ValueError, match="denoising_steps must be >= 1"):
        dataclasses.replace(micro, denoising_steps=0)


def test_presets_refuse_a_schedule_diamond_would_assert_on():
    with pytest.raises(ValueError, match="multiples of collect_steps_per_epoch"):
        dataclasses.replace(PRESETS["paper"], initial_collect_min_steps=5050)
    with pytest.raises(ValueError, match="initial_collect_max_steps"):
        dataclasses.replace(PRESETS["paper"], initial_collect_max_steps=4000)


class ToyGame:
    """Collects steps of a game that pays a reward every ``every`` steps (the rarer sign), 0 otherwise."""

    def __init__(self, every: int) -> None:
        self.every, self.steps, self.calls = every, 0, []

    def collect(self, n: int) -> int:
        self.calls.append(n)
        self.steps += n
        return n

    def counts(self) -> list[int]:
        paid = self.steps // self.every
        return [0, self.steps - paid, paid]


@pytest.mark.parametrize("every, calls", [(400, [5000]),  # 12 rewards in the first 5,000 steps: enough
                                          (600, [5000] + [100] * 10),  # the 10th reward comes at step 6,000
                                          (10**9, [5000] + [100] * 50)])  # never: stop at the maximum
def test_the_initial_collection_goes_on_until_ten_rarer_rewards_or_the_maximum(every, calls):
    game = ToyGame(every)
    collected = collect_initial_dataset(game.collect, lambda: game.steps, game.counts, PRESETS["paper"])
    assert game.calls == calls and collected == sum(calls)


def test_the_minority_reward_count_is_all_counts_but_the_largest(tmp_path):
    assert minority_reward_count([3, 90, 7]) == 10 and minority_reward_count([50, 2, 1]) == 3
    data = EpisodeDataset(tmp_path, game="Pong")
    rng = np.random.default_rng(0)
    data.append(random_episode(rng, 5, np.array([0, -1, 0, 2, 1])))
    data.append(random_episode(rng, 3, np.array([-3, 0, 0])))
    assert reward_sign_counts(data) == [2, 4, 2]


def test_unfinished_episodes_are_stored_then_extended_under_the_same_id(tmp_path):
    from training.data.vector_atari import make_vector_atari

    data = EpisodeDataset(tmp_path / "data", game="Breakout")
    env = make_vector_atari("Breakout", 1, done_on_life_loss=True, seed=0)
    collector = Collector(env, data, RandomAgent(4, seed=0))
    collector.collect(30)
    unfinished = collector.store_unfinished()
    assert 0 < unfinished <= 30 and data.num_steps == 30  # every step is in the dataset
    last = len(data) - 1
    first = data.episode(last)
    assert len(first) == unfinished and not (first.terminated[-1] or first.truncated[-1])  # neither: it goes on
    collector.collect(20)
    collector.store_unfinished()
    assert data.num_steps == 50  # extended, not stored twice
    longer = data.episode(last)  # the same id, grown (and maybe ended)
    assert len(longer) > len(first)
    np.testing.assert_array_equal(longer.frames[:len(first) + 1], first.frames)
    env.close()


# ------------------------------------------------------------------------------------------ imagination


def test_start_contexts_are_preloaded_in_groups_and_handed_out_in_order(dataset, world_model, monkeypatch):
    drawn = []
    sample_positions = BatchSampler.sample_positions

    def recording(sampler, *args, **kwargs):
        ids, starts = sample_positions(sampler, *args, **kwargs)
        drawn.append((ids, starts, kwargs["sample_weights"]))
        return ids, starts

    monkeypatch.setattr(BatchSampler, "sample_positions", recording)
    starts = PreloadedStarts(dataset, world_model, batch_size=2, num_batches=3, sample_weights=(0.1, 0.1, 0.1, 0.7),
                             rng=np.random.default_rng(0))
    frames, actions, (h, c) = starts.take(4)
    assert starts.groups == 1 and len(drawn) == 3 and starts.remaining == 2
    assert all(w == (0.1, 0.1, 0.1, 0.7) for *_, w in drawn)
    ids = np.concatenate([d[0] for d in drawn])
    first = np.concatenate([d[1] for d in drawn])
    segment = dataset.get_segments(ids[:4], first[:4], 3)
    expected = to_model_frames(torch.as_tensor(segment.frames)) * torch.as_tensor(segment.frame_mask)[..., None, None,
                                                                                                          None]
    assert torch.equal(frames, expected)  # in the order drawn, padding grey (0)
    assert torch.equal(actions[:, :3], torch.as_tensor(segment.actions)) and (actions[:, 3] == 0).all()
    state = world_model.burn_in(frames, actions)  # burnt in at preload time, on the same contexts
    assert torch.allclose(h, state[0], atol=1e-6) and torch.allclose(c, state[1], atol=1e-6)
    starts.take(3)  # 2 left: dropped, a new group is drawn (DIAMOND's make_generator_init)
    assert starts.groups == 2 and len(drawn) == 6 and starts.remaining == 3


class ForcedEnds:
    """Wraps a world model's ``imagine_step`` so that rows terminate at given steps."""

    def __init__(self, world_model: WorldModel, terminate: dict[int, list[int]]) -> None:
        self.step, self.terminate, self.imagine_step = 0, terminate, world_model.imagine_step
        world_model.imagine_step = self

    def __call__(self, *args, **kwargs):
        out = self.imagine_step(*args, **kwargs)
        self.last_frame = out.next_frame
        ended = torch.zeros_like(out.terminated)
        ended[self.terminate.get(self.step, [])] = True
        self.step += 1
        return dataclasses.replace(out, terminated=ended)


def make_env(dataset, world_model, horizon: int, num_envs: int = 2) -> WorldModelEnv:
    starts = PreloadedStarts(dataset, world_model, batch_size=num_envs, num_batches=4, sample_weights=None,
                             rng=np.random.default_rng(1))
    return WorldModelEnv(world_model, starts, num_envs, horizon, torch.Generator().manual_seed(0))


def test_imagined_episodes_are_truncated_after_horizon_steps_of_their_own(dataset, world_model):
    forced = ForcedEnds(world_model, {3: [0]})  # row 0 terminates at its 4th step
    env = make_env(dataset, world_model, horizon=5)
    env.reset()
    ends = []
    for _ in range(12):
        before = env.frames.clone()
        obs, _, terminated, truncated, info = env.step(torch.zeros(2, dtype=torch.long))
        dead = terminated | truncated
        ends.append((terminated.tolist(), truncated.tolist()))
        if dead.any():
            assert torch.equal(info["final_observation"], forced.last_frame[dead])
            assert info["burnin_obs"].shape == (int(dead.sum()), 3, 3, 64, 64)
            assert torch.equal(info["burnin_obs"], env.frames[dead, :-1]) and torch.equal(obs, env.frames[:, -1])
        assert torch.equal(env.frames[~dead, :-1], before[~dead, 1:])  # the others go on
    truncations = [[t for t, (_, trunc) in enumerate(ends) if trunc[row]] for row in range(2)]
    assert truncations == [[8], [4, 9]]  # row 0: 5 steps after its restart at step 3; row 1: every 5
    assert [t for t, (term, _) in enumerate(ends) if term[0]] == [3]


class ScriptedDream:
    """A dream with DIAMOND's WorldModelEnv interface: constant frames, row 0 terminates at step ``end_at``."""

    def __init__(self, end_at: int, num_envs: int = 2) -> None:
        self.t, self.end_at, self.num_envs, self.resets = 0, end_at, num_envs, 0
        self.burnin = torch.full((1, 3, 3, 64, 64), 0.5, requires_grad=True)  # a leaf, to see the gradient reach it

    def reset(self) -> tuple[torch.Tensor, dict]:
        self.resets += 1
        return torch.zeros(self.num_envs, 3, 64, 64), {}

    def step(self, actions: torch.Tensor) -> tuple:
        terminated = torch.zeros(self.num_envs, dtype=torch.bool)
        info = {}
        if self.t == self.end_at:
            terminated[0] = True
            info = {"final_observation": torch.ones(1, 3, 64, 64), "burnin_obs": self.burnin}
        self.t += 1
        obs = torch.full((self.num_envs, 3, 64, 64), -0.5 + 0.01 * self.t)
        return obs, torch.zeros(self.num_envs), terminated, torch.zeros_like(terminated), info


def actor_critic() -> ActorCritic:
    torch.manual_seed(0)
    model = ActorCritic(ActorCriticConfig(6, channels=(4, 4, 4, 4), lstm_dim=8))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


def test_dreams_go_on_across_updates_with_the_lstm_state_carried_over_detached():
    env, model = ScriptedDream(end_at=99), actor_critic()
    loop = EnvLoop(env, model, lambda logits: logits.argmax(-1))
    first = loop.rollout(4)
    carried = loop.state
    assert not carried[0].requires_grad and carried[0].abs().sum() > 0
    second = loop.rollout(4)
    assert env.resets == 1 and env.t == 8  # one reset, then the same dreams for 8 steps
    # the second update starts from the first one's last observation and LSTM state
    logits, value, _ = model(torch.full((2, 3, 64, 64), -0.5 + 0.04), carried)
    assert torch.allclose(second.logits[:, 0], logits) and torch.allclose(second.values[:, 0], value)
    assert torch.allclose(first.bootstrap, second.values[:, 0].detach())


def test_after_an_end_the_lstm_is_zeroed_and_burnt_in_on_the_new_context_with_gradient():
    env, model = ScriptedDream(end_at=1), actor_critic()
    rollout = EnvLoop(env, model, lambda logits: logits.argmax(-1)).rollout(4)
    assert rollout.terminated[0].tolist() == [False, True, False, False]
    rollout.values[:, 2:].sum().backward()
    assert env.burnin.grad is not None and env.burnin.grad.abs().sum() > 0  # the loss reaches the burn-in
    # row 0 from step 2 on: a zero state burnt in on the new context, nothing of the ended episode
    state = model.burn_in(env.burnin.detach(), model.initial_state(1))
    _, value, _ = model(torch.full((1, 3, 64, 64), -0.5 + 0.02), state)
    assert torch.allclose(rollout.values[0, 2], value[0])
    # the value bootstrap of the ended step is its final observation's, with the ended episode's state
    assert rollout.final_values[0, 1] != 0 and (rollout.final_values[1] == 0).all()


# ------------------------------------------------------------------------------------------- pipeline


def test_the_dream_runs_fp32_by_default_and_bf16_on_request(tmp_path):
    default = Pipeline("Breakout", tmp_path / "a", "micro", device="cpu", progress=False)
    assert default.world_model.acceleration.precision == "fp32" and default.dream_precision == "fp32"
    bf16 = Pipeline("Breakout", tmp_path / "b", "micro", device="cpu", progress=False, dream_precision="bf16")
    assert bf16.world_model.acceleration.precision == "bf16" and bf16.precision == "fp32"


def test_a_run_folder_of_the_earlier_schedule_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "old"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"game": "Breakout", "preset": "micro", "seed": 0, "epochs": 2,
                                                 "initial_random_steps": 150}))
    with pytest.raises(RunFolderError, match="earlier gym-diamond.*another --out"):
        Pipeline("Breakout", out, "micro", device="cpu", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--game", "Breakout", "--preset", "micro", "--out", str(out), "--device", "cpu"])
    message = capsys.readouterr().err
    assert exit_info.value.code == 2 and message.startswith("error: ") and message.count("\n") == 1


def test_each_epochs_log_row_is_the_mean_over_its_updates_not_the_last_one(tmp_path, monkeypatch):
    """One update of a rare-reward game sees no reward at all: the row must be the epoch's rate."""
    from training.agents.imagination import ImaginationTrainer
    from training.world_model.trainer import WorldModelTrainer

    calls = {"denoiser": 0, "actor_critic": 0}

    def scripted(name, key):
        def step(self):
            calls[name] += 1
            return {key: float(calls[name])}
        return step

    monkeypatch.setattr(WorldModelTrainer, "denoiser_step", scripted("denoiser", "denoiser_loss"))
    monkeypatch.setattr(ImaginationTrainer, "step", scripted("actor_critic", "imagined_reward_per_step"))
    preset = dataclasses.replace(PRESETS["micro"], denoiser_steps_first_epoch=4, actor_critic_steps_first_epoch=3)
    Pipeline("Breakout", tmp_path / "run", preset, device="cpu", progress=False).run(stop_after_epochs=1)
    with (tmp_path / "run" / "world_model.csv").open() as f:
        world_model = list(csv.DictReader(f))
    with (tmp_path / "run" / "actor_critic.csv").open() as f:
        actor_critic = list(csv.DictReader(f))
    assert float(world_model[0]["denoiser_loss"]) == (1 + 2 + 3 + 4) / 4
    assert world_model[0]["reward_loss"] != ""  # the other network's scalars kept beside them
    assert float(actor_critic[0]["imagined_reward_per_step"]) == (1 + 2 + 3) / 3


def test_a_preset_field_is_set_from_the_command_line_checked_and_recorded(tmp_path):
    from training.presets import override_preset

    sparse = PRESETS["cpu-sparse"]
    more = override_preset(sparse, ["actor_critic_steps_per_epoch=150", "imagination.horizon=30",
                                    "world_model_training.lr=0.0003", "initial_collect_max_steps=null",
                                    "world_model=light", "actor_critic.channels=[8, 8, 16, 16]"])
    assert more.actor_critic_steps_per_epoch == 150 and more.imagination.horizon == 30
    assert more.world_model_training.lr == 3e-4 and more.initial_collect_max_steps is None
    assert more.world_model == "light" and more.actor_critic.channels == (8, 8, 16, 16)
    assert more.imagination.batch_size == sparse.imagination.batch_size  # the rest as it was
    assert override_preset(sparse, ["world_model_training.lr=1"]).world_model_training.lr == 1.0  # an int for a float
    for bad, message in [("actor_critic_steps_per_epoch", "FIELD=VALUE"), ("actor_critic_step=3", "no field"),
                         ("actor_critic_steps_per_epoch=1.5", "expected a value like 60"),
                         ("imagination=3", "is a config"), ("world_model.x=1", "not a composed config"),
                         ("initial_collect_min_steps=150", "multiples of collect_steps_per_epoch"),
                         ("imagination.horizon=null", "expected a value like 15")]:
        with pytest.raises(ValueError, match=message):
            override_preset(sparse, [bad])
    out = tmp_path / "run"
    Pipeline("Breakout", out, "micro", device="cpu", progress=False,
             preset_overrides=["actor_critic_steps_per_epoch=2"]).folder.close()
    config = json.loads((out / "config.json").read_text())
    assert config["preset"] == "micro actor_critic_steps_per_epoch=2" and config["actor_critic_steps_per_epoch"] == 2
    with pytest.raises(ValueError, match="other settings"):  # resumed without the override: refused
        Pipeline("Breakout", out, "micro", device="cpu", progress=False)
    longer = Pipeline("Breakout", tmp_path / "context", "micro", device="cpu", progress=False,
                      preset_overrides=["world_model_training.context_length=8"])
    assert longer.world_model.config.denoiser.context_length == 8  # the model built for it, not the size's 4
    longer.folder.close()
    assert PRESETS["cpu"].world_model_config(3).denoiser.train_sigma_loc == 0.4  # the recipe's training noise
