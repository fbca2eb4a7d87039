"""DIAMOND end to end: collect real data, train the world model, train the agent in it, evaluate.

    python -m training.pipeline --game Breakout --preset paper --device cuda --compile
    python -m training.pipeline --game Pong --preset demo          # minutes on a CPU

The schedule is DIAMOND's (its ``Trainer.run``, ``config/trainer.yaml``; ``training.presets``): an initial
collection of at least 5,000 real steps that goes on 100 at a time until at least 10 steps carry the
rarer reward signs (at most 10,000), then epochs that each collect 100 steps (the actor-critic playing
with epsilon 0.01) and train the denoiser, the reward/termination model and the actor-critic (10,000,
10,000 and 5,000 updates in the first epoch, 400 each after), until 100,000 real steps are in; then 50
final epochs that only train. The agent is scored in the real game every 10 epochs (4 episodes) and at
the end (100 episodes). The collector stores the episode it is in the middle of at the end of each
collection, so every collected step is trainable, and extends it at the next.

Each epoch appends a row to ``world_model.csv`` and ``actor_critic.csv``: the mean of every scalar over the
epoch's updates. The run folder holds everything; re-running the same command resumes where the run was last saved:
after each stage, and every ``--save-minutes`` (10) inside a long one, so a killed run loses at most that much
training (collection is never repeated). At the end it writes ``world_model.safetensors`` (for ``gym.make``),
``actor_critic.safetensors`` and ``report.json``. A run folder written by an earlier gym-diamond, before
this schedule, does not resume: the command says so.

Data-parallel: ``torchrun --nproc_per_node N -m training.pipeline ...`` splits every update's batch
(the preset's, which stays the global batch: N must divide it) and the imagined dreams across N
processes, one device each (training.runtime.distributed). Rank 0 collects the real data, evaluates and
writes every file; the others wait for it and re-read the dataset before training on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gym_diamond import WorldModel, save_checkpoint
from gym_diamond.acceleration import PRECISIONS, Acceleration
from gym_diamond.errors import UserError
from gym_diamond.nn.actor_critic import ActorCritic
from training.agents.checkpoints import save_actor_critic
from training.agents.evaluate import EVALUATION_SEED_OFFSET, evaluate
from training.agents.imagination import ImaginationTrainer
from training.agents.sb3_pipeline_agent import ACTOR_CRITIC, SB3PipelineAgent
from training.agents.sb3_pipeline_agent import MODEL_FILE as SB3_MODEL_FILE
from training.data.collect import Collector
from training.data.dataset import EpisodeDataset
from training.data.environments import RealEnvironment, add_environment_arguments, environment_from_arguments
from training.data.policies import ActorCriticAgent, Agent, RandomAgent
from training.presets import PRESETS, SCHEDULE, PipelinePreset, get_preset, override_preset
from training.runtime.cli import (
    add_algo_kwargs_argument,
    add_device_argument,
    add_preset_override_argument,
    add_speed_arguments,
    user_errors,
)
from training.runtime.csv_log import ScalarMeans
from training.runtime.distributed import init_distributed
from training.runtime.files import write_json_atomic
from training.runtime.run_folder import RunFolder
from training.runtime.signals import deferred_interrupt
from training.runtime.state import load_state, save_state
from training.world_model.trainer import WorldModelTrainer

STAGES = ("collect", "world_model", "actor_critic", "evaluate")
WORLD_MODEL_NETWORKS = ("denoiser", "rew_end")
TRAINED_NETWORKS = (*WORLD_MODEL_NETWORKS, "actor_critic")  # in the order an epoch trains them
SAVE_MINUTES = 10.0  # training between saved states inside an epoch (DIAMOND saves once an epoch)


class RunFolderError(UserError):
    """A run folder this command cannot go on with: another run's, or one an earlier gym-diamond wrote."""


def reward_sign_counts(dataset: EpisodeDataset) -> list[int]:
    """How many of the dataset's transitions have reward sign -1, 0 and +1 (DIAMOND's ``Dataset.counts_rew``)."""
    counts = np.zeros(3, dtype=np.int64)
    for i in range(len(dataset)):
        signs = np.sign(dataset.episode(i).rewards).astype(np.int64) + 1
        counts += np.bincount(signs, minlength=3)
    return counts.tolist()


def minority_reward_count(counts: Sequence[int]) -> int:
    """The steps that carry a reward sign other than the most frequent one: all counts but the largest."""
    return int(sum(sorted(counts)[:-1]))


def collect_initial_dataset(collect: Callable[[int], int], dataset_steps: Callable[[], int],
                            reward_counts: Callable[[], Sequence[int]], preset: PipelinePreset) -> int:
    """DIAMOND's ``Trainer.collect_initial_dataset``: collect ``initial_collect_min_steps``, then
    ``collect_steps_per_epoch`` more at a time until ``minority_reward_count`` reaches
    ``initial_collect_threshold_rew`` or the dataset holds ``initial_collect_max_steps``.

    ``collect(n)`` collects n real steps (and stores them) and returns how many it collected; returns
    the steps collected in all.
    """
    steps, collected = preset.initial_collect_min_steps, 0
    while True:
        collected += collect(steps)
        if minority_reward_count(reward_counts()) >= preset.initial_collect_threshold_rew:
            return collected
        if preset.initial_collect_max_steps is not None and dataset_steps() >= preset.initial_collect_max_steps:
            return collected
        steps = preset.collect_steps_per_epoch


def _position(state: dict[str, Any]) -> tuple[int, ...]:
    """How far a saved progress got: later epochs, collections and updates inside the epoch sort after."""
    done = (state.get("partial") or {}).get("done", {})
    return state["epoch"], state["collected_epochs"], *(done.get(network, 0) for network in TRAINED_NETWORKS)


class Pipeline:
    """One run folder and the objects that train in it; ``run()`` goes on from wherever it stopped."""

    def __init__(self, environment: RealEnvironment | str, out: str | Path, preset: str | PipelinePreset = "demo", *,
                 device: str | torch.device | None = None, seed: int = 0, progress: bool = True,
                 precision: str | None = None, compile: bool = False, dream_precision: str | None = None,
                 agent: str = ACTOR_CRITIC, algo_kwargs: dict[str, Any] | None = None,
                 preset_overrides: Sequence[str] = (), save_minutes: float = SAVE_MINUTES) -> None:
        """``precision`` and ``compile`` are speed switches of every network, training and dream alike; they
        are not part of the run's settings, so a run may resume with others. By default everything runs
        in fp32, as DIAMOND does; ``dream_precision`` sets the dream the actor-critic learns in apart
        (e.g. "bf16", faster on a bf16 device; default: ``precision``). ``environment`` is an Atari game's name
        or any ``RealEnvironment`` (a Gymnasium id with image observations and discrete actions). ``agent`` is
        DIAMOND's actor-critic, or the name of a stable-baselines3 algorithm (``"ppo"``, built with
        ``algo_kwargs``) trained in the same dreams (``training.agents.sb3_pipeline_agent``). ``preset_overrides``
        set fields of the preset (``FIELD=VALUE``, :func:`training.presets.override_preset`); the run records them
        in its preset's name and every value in its config.json, so it resumes only with the same. Inside an
        epoch the run is saved every ``save_minutes`` of training (0: after every update), so a killed run
        loses no more; DIAMOND's first epoch alone is 25,000 updates."""
        self.environment = (environment if isinstance(environment, RealEnvironment)
                            else RealEnvironment(game=environment))
        self.game = self.environment.name
        self.preset_name = " ".join([preset if isinstance(preset, str) else "custom", *preset_overrides])
        self.preset = override_preset(get_preset(preset) if isinstance(preset, str) else preset, preset_overrides)
        self.out = Path(out)
        self.distributed, self.device = init_distributed(device)
        self.main_rank = self.distributed.is_main
        self.seed, self.progress = seed, progress and self.main_rank
        if not save_minutes >= 0:
            raise UserError(f"save_minutes must be >= 0, got {save_minutes}")
        self.save_seconds, self._saved_at = 60.0 * save_minutes, time.monotonic()
        self._stage_clock = time.perf_counter()  # when the stage's time not yet added to progress.json began
        self.agent_name, self.algo_kwargs = agent, dict(algo_kwargs or {})
        if agent != ACTOR_CRITIC and self.distributed.world_size > 1:
            raise UserError(f"--agent {agent} trains in one process; run it without torchrun")
        for name, batch in (("world_model_training.batch_size", self.preset.world_model_training.batch_size),
                            ("imagination.batch_size", self.preset.imagination.batch_size)):
            if batch % self.distributed.world_size:
                raise UserError(f"the preset's {name} {batch} does not split over {self.distributed.world_size} "
                                f"processes: use a number of processes that divides it")
        self.folder = RunFolder(self.out, "pipeline run", writer=self.main_rank)
        self.folder.open()  # released when run() ends, by close(), or with the process
        if self.main_rank:
            self._check_run_config()
        self.distributed.barrier()
        self.action_meanings = self.environment.action_meanings()
        n = len(self.action_meanings)
        p = self.preset
        torch.manual_seed(seed)
        self.precision, self.compile = precision or "fp32", compile  # the trainers'
        self.dream_precision = dream_precision or self.precision
        if self.dream_precision not in PRECISIONS:
            raise UserError(f"dream_precision must be one of {PRECISIONS}, got {self.dream_precision!r}")
        self.world_model = WorldModel(p.world_model_config(n)).to(self.device)
        # the dream; compile=True compiles the modules themselves
        self.world_model.accelerate(Acceleration(precision=self.dream_precision, channels_last=True))
        self.actor_critic = ActorCritic(p.actor_critic.for_actions(n)).to(self.device)
        self.sb3 = None if agent == ACTOR_CRITIC else SB3PipelineAgent(
            agent, self.action_meanings, p.imagination, self.folder.file(SB3_MODEL_FILE), algo_kwargs=algo_kwargs,
            seed=seed, device=self.device)
        self.progress_path = self.folder.file("progress.json")
        self.state_path = self.folder.file("train_state.safetensors")
        self.state = self._initial_state()
        self._saved: dict[str, Any] | None = load_state(self.state_path) if self.state_path.exists() else None
        if self.progress_path.exists():
            self.state = json.loads(self.progress_path.read_text())
        saved_progress = (self._saved or {}).get("progress")
        if saved_progress is not None and _position(saved_progress) > _position(self.state):
            self.state = saved_progress  # killed between the training state and progress.json: the state is newer
        # rank 0 opens the dataset first (opening recovers listed-late episodes, truncation deletes some):
        # the other ranks open it once it is settled
        if self.main_rank:
            self.dataset = self._open_dataset()
            # episodes a killed run stored after its last save are collected again
            self.dataset.truncate(min(self.state["dataset_episodes"], len(self.dataset)))
        self.distributed.barrier()
        if not self.main_rank:
            self.dataset = self._open_dataset()
        # one CSV per stage, each with its own columns; rows a killed run wrote after its last save are redone
        self.logs = {"collect": self.folder.log("collect.csv", resume_at=self.state["collected_epochs"], key="epoch"),
                     **{stage: self.folder.log(f"{stage}.csv", resume_at=self.state["epoch"], key="epoch")
                        for stage in ("world_model", "actor_critic")},
                     "agent": self.folder.log("agent.csv", resume_at=self.state["epoch"], key="epoch"),
                     "evaluate": self.folder.log("evaluate.csv")}
        self.wm_trainer: WorldModelTrainer | None = None
        self.ac_trainer: ImaginationTrainer | None = None
        self.collector: Collector | None = None

    def _open_dataset(self) -> EpisodeDataset:
        """The run's dataset; one of a Gymnasium env stores its action names (an Atari game's come from ale-py)."""
        meanings = None if self.environment.is_atari else self.action_meanings
        return EpisodeDataset(self.out / "data", game=self.game, action_meanings=meanings)

    @staticmethod
    def _initial_state() -> dict[str, Any]:
        """progress.json of a new run. ``collect_epochs`` (DIAMOND's ``num_epochs_collect``) is known once
        the initial collection is done; ``collected_epochs`` is the last epoch whose collection is stored."""
        return {"schedule": SCHEDULE, "epoch": 0, "collect_epochs": None, "collected_epochs": 0, "env_steps": 0,
                "seconds": dict.fromkeys(STAGES, 0.0), "evaluations": [], "dataset_episodes": 0}

    def _check_run_config(self) -> None:
        """A run folder belongs to one game, preset and seed; reusing it for another is an error, and so is
        one an earlier gym-diamond wrote with another schedule."""
        run = {"game": self.game, "preset": self.preset_name, "seed": self.seed, "schedule": SCHEDULE}
        if not self.environment.is_atari:  # an Atari run's config names its game alone, as before
            run["environment"] = self.environment.describe()
        if self.agent_name != ACTOR_CRITIC:  # so does a run of DIAMOND's own agent
            run.update(agent=self.agent_name, algo_kwargs=self.algo_kwargs)
        config = {**run, **self.preset.to_dict()}
        # runs recorded before the preset composed the trainers' configs resume, their config.json rewritten
        self.folder.upgrade_settings({**run, **self.preset.legacy_dict()}, config)
        saved = self.folder.saved_settings()
        earlier = (saved is not None and saved.get("schedule") != SCHEDULE) or \
            (saved is None and self.folder.file("progress.json").exists())
        if earlier:
            raise RunFolderError(f"{self.out} holds a run of an earlier gym-diamond, whose pipeline did not follow "
                                 f"DIAMOND's schedule: it cannot resume; start a new run with another --out")
        self.folder.guard(config)

    # ------------------------------------------------------------------ schedule
    @property
    def epochs(self) -> int | None:
        """The run's number of epochs; None until the initial collection is done."""
        collect_epochs = self.state["collect_epochs"]
        return None if collect_epochs is None else collect_epochs + self.preset.final_epochs

    def _collects(self, epoch: int) -> bool:
        """Whether epoch ``epoch`` (from 1) collects real data (the first also makes the initial collection)."""
        collect_epochs = self.state["collect_epochs"]
        return self.state["collected_epochs"] < epoch and (collect_epochs is None or epoch <= collect_epochs)

    # ------------------------------------------------------------------ stages
    def _timed(self, stage: str, start: float) -> float:
        """Add the seconds since ``start`` to ``stage``'s; returns now."""
        now = time.perf_counter()
        self.state["seconds"][stage] += now - start
        return now

    def _collect(self, epoch: int) -> None:
        """Rank 0 plays the real game; every rank then sees the new episodes and the same progress."""
        if self.main_rank:
            self._collect_here(epoch)
        self.distributed.barrier()
        self.state = self.distributed.broadcast(self.state)
        if not self.main_rank:  # rank 0's dataset object appended the episodes itself
            self.dataset.refresh()  # drops its cached copies of episodes rank 0 stored again

    def _collect_here(self, epoch: int) -> None:
        """Epoch ``epoch``'s real steps (the first epoch's after the initial collection), episodes stored."""
        p, t0 = self.preset, time.perf_counter()
        if self.collector is None:
            env = self.environment.collector_env(1, seed=self.seed + 1000 * epoch)
            # DIAMOND collects with the actor-critic from the start: untrained, its zero heads play uniformly
            agent = ActorCriticAgent(self.actor_critic, 1, epsilon=p.epsilon, seed=self.seed + epoch)
            self.collector = Collector(env, self.dataset, agent)
        if self.sb3 is not None:  # the policy as it now is (uniform play until it first trains)
            self.collector.policy = self.sb3.playing_agent(1, seed=self.seed + epoch)
        stats = {"steps": 0, "episodes_finished": 0, "returns": []}

        def collect(steps: int) -> int:
            done = self.collector.collect(steps, progress=self.progress)
            self.collector.store_unfinished()  # as DIAMOND's collector, so every step is trainable now
            stats["steps"] += done.steps
            stats["episodes_finished"] += done.episodes_finished
            stats["returns"] += done.returns
            return done.steps

        if epoch == 1:
            collect_initial_dataset(collect, lambda: self.dataset.num_steps, lambda: reward_sign_counts(self.dataset),
                                    p)
            self.state["collect_epochs"] = p.collect_epochs(self.dataset.num_steps)
        if epoch <= self.state["collect_epochs"]:
            collect(p.collect_steps_per_epoch)
        seconds = time.perf_counter() - t0
        self.state["env_steps"] += stats["steps"]
        self.state["collected_epochs"] = epoch
        self._timed("collect", t0)
        returns = stats["returns"]
        self.logs["collect"].write({
            "epoch": epoch, "env_steps": self.state["env_steps"], "dataset_steps": self.dataset.num_steps,
            "episodes": len(self.dataset), "steps": stats["steps"], "episodes_finished": stats["episodes_finished"],
            "mean_return": float(np.mean(returns)) if returns else math.nan, "seconds": seconds,
            "steps_per_second": stats["steps"] / seconds if seconds > 0 else math.nan,
            "minority_reward_steps": minority_reward_count(reward_sign_counts(self.dataset))})
        self._save()

    def _stage_bar(self, total: int, desc: str, unit: str, done: int = 0) -> tqdm:
        """A bar inside the epoch bar, so a long stage shows it is moving (gone when the stage ends)."""
        return self.folder.progress_bar(total=total, initial=done, desc=desc, unit=unit, leave=False,
                                        enabled=self.progress)

    def _updates(self, epoch: int, network: str, stage: str, step: Callable[[], dict[str, Any]],
                 scalars: ScalarMeans) -> None:
        """``network``'s updates of epoch ``epoch`` not done yet, their scalars added to ``scalars``; the run is
        saved every ``save_minutes`` between two of them, with the means so far (the epoch's row stays whole), and
        when Ctrl-C or SIGTERM stops it (after the update under way)."""
        partial = self.state["partial"]
        total, done = self.preset.steps_of(network, epoch), partial["done"].get(network, 0)
        desc = f"epoch {epoch}: " + ("actor-critic" if stage == "actor_critic" else f"world model ({network})")
        with self._stage_bar(total, desc, "update", done) as bar, deferred_interrupt() as stop:
            for update in range(done + 1, total + 1):
                scalars.add(step())
                partial["done"][network] = update
                bar.update(1)
                if stop.requested or (update < total and time.monotonic() - self._saved_at >= self.save_seconds):
                    partial["scalars"][stage] = scalars.to_dict()
                    self._stage_clock = self._timed(stage, self._stage_clock)
                    self._save()
                    stop.raise_if_requested()

    def _trainers(self) -> None:
        if self.wm_trainer is not None:
            return
        p, n = self.preset, self.distributed.world_size
        speed = {"precision": self.precision, "compile": self.compile}  # the command's, not the preset's
        self.wm_trainer = WorldModelTrainer(self.world_model, self.dataset, dataclasses.replace(
            p.world_model_training, batch_size=p.world_model_training.batch_size // n, **speed),
            seed=self.seed, distributed=self.distributed)
        if self.sb3 is None:
            self.ac_trainer = ImaginationTrainer(self.world_model, self.actor_critic, self.dataset, dataclasses.replace(
                p.imagination, batch_size=p.imagination.batch_size // n, **speed), seed=self.seed,
                distributed=self.distributed)
        if self._saved is not None:
            self.wm_trainer.load_state_dict(self._saved["world_model"])
            if self.ac_trainer is not None:
                self.ac_trainer.load_state_dict(self._saved["actor_critic"])
            self._saved = None

    def _train(self, epoch: int) -> None:
        """DIAMOND's ``train_agent``: the denoiser's updates, the reward/termination model's, the actor-critic's
        (those a run saved mid-epoch did before it stopped are not done again)."""
        p = self.preset
        self._trainers()
        partial = self.state.get("partial")
        if partial is None or partial["epoch"] != epoch:
            partial = self.state["partial"] = {"epoch": epoch, "done": {}, "scalars": {}}
        self._stage_clock = time.perf_counter()
        scalars = ScalarMeans.from_dict(partial["scalars"].get("world_model"))
        updates = {"denoiser": self.wm_trainer.denoiser_step, "rew_end": self.wm_trainer.rew_end_step}
        for network in WORLD_MODEL_NETWORKS:
            self._updates(epoch, network, "world_model", updates[network], scalars)
        self._timed("world_model", self._stage_clock)
        partial["scalars"]["world_model"] = scalars.to_dict()  # a resume mid actor-critic writes the row again
        if self.main_rank:
            self.logs["world_model"].write({"epoch": epoch, **scalars.means()})
        self._stage_clock = time.perf_counter()
        if self.sb3 is not None:
            steps = self.sb3.steps_for(p.steps_of("actor_critic", epoch))
            self.logs["agent"].write({"epoch": epoch, **self.sb3.learn(self.world_model, self.wm_trainer.start_bank(),
                                                                       steps)})
            self._timed("actor_critic", self._stage_clock)
            return
        scalars = ScalarMeans.from_dict(partial["scalars"].get("actor_critic"))
        self._updates(epoch, "actor_critic", "actor_critic", self.ac_trainer.step, scalars)
        self._timed("actor_critic", self._stage_clock)
        if self.main_rank:
            self.logs["actor_critic"].write({"epoch": epoch, **scalars.means()})

    def _evaluate(self, episodes: int) -> dict[str, Any]:
        """Rank 0 scores the agent in the real game; every rank gets the record."""
        record = self._evaluate_here(episodes) if self.main_rank else None
        return self.distributed.broadcast(record)

    def _evaluate_here(self, episodes: int, agent: Agent | None = None) -> dict[str, Any]:
        """The actor-critic's real episodes (or ``agent``'s, not logged: the random baseline's)."""
        t0 = time.perf_counter()
        played = agent or (self.sb3.playing_agent(min(8, episodes), seed=self.seed) if self.sb3 is not None else
                           ActorCriticAgent(self.actor_critic, min(8, episodes), seed=self.seed))
        result = evaluate(played, self.environment, episodes, num_envs=min(8, episodes),
                          seed=self.seed + EVALUATION_SEED_OFFSET, progress=self.progress)
        self._timed("evaluate", t0)
        record = {"epoch": self.state["epoch"], "env_steps": self.state["env_steps"], "mean": result.mean,
                  "ci95": list(result.interval), "std": result.std, "hns": result.hns, "episodes": episodes,
                  "returns": result.returns}
        if agent is not None:
            return record
        self.logs["evaluate"].write({"epoch": self.state["epoch"], "env_steps": self.state["env_steps"],
                                     "mean": result.mean, "std": result.std, "hns": result.hns})
        return record

    def _save(self) -> None:
        """Commit the run: the trainers (with the progress they belong to), then progress.json."""
        self.state["dataset_episodes"] = len(self.dataset)
        self._saved_at = time.monotonic()
        if not self.main_rank:
            return
        if self.wm_trainer is not None:
            agent = {} if self.ac_trainer is None else {"actor_critic": self.ac_trainer.state_dict()}
            save_state(self.state_path, {"world_model": self.wm_trainer.state_dict(), **agent,
                                         "progress": self.state})
        if self.sb3 is not None:
            self.sb3.save()
        write_json_atomic(self.progress_path, self.state)

    def close(self) -> None:
        """Give the run folder up for another process (``run()`` does when it ends; a Pipeline only inspected
        holds it until this, or the end of its ``with`` block or process)."""
        self.folder.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --------------------------------------------------------------------- run
    def run(self, stop_after_epochs: int | None = None) -> dict[str, Any]:
        """Run (or resume) to the end; ``stop_after_epochs`` stops early (to test resumption)."""
        p = self.preset
        self.folder.open()  # again, if an earlier run() of this object gave it up
        bar = self.folder.progress_bar(total=self.epochs, initial=self.state["epoch"], desc=f"DIAMOND {self.game}",
                                       unit="epoch", enabled=self.progress)
        try:
            while self.epochs is None or self.state["epoch"] < self.epochs:
                epoch = self.state["epoch"] + 1
                if stop_after_epochs is not None and epoch > stop_after_epochs:
                    return self.state
                if self._collects(epoch):
                    self._collect(epoch)
                    bar.total = self.epochs
                    if epoch > self.epochs:  # the initial collection took every real step and there is no final epoch
                        break
                self._train(epoch)
                self.state["epoch"] = epoch
                del self.state["partial"]
                if p.eval_every and epoch % p.eval_every == 0:
                    self.state["evaluations"].append(self._evaluate(p.eval_episodes))
                if epoch % p.save_every == 0 or epoch == self.epochs:
                    self._save()
                bar.update(1)
            return self._finish()
        finally:
            bar.close()
            self.folder.close()

    def _finish(self) -> dict[str, Any]:
        report_path = self.out / "report.json"
        if report_path.exists():
            return json.loads(report_path.read_text())
        self._trainers()
        final = self._evaluate(self.preset.final_eval_episodes)
        # random play on the same episodes (the same seeds): what the agent must beat
        random = self._evaluate_here(self.preset.final_eval_episodes,
                                     RandomAgent(len(self.action_meanings), seed=self.seed)) if self.main_rank else None
        if not self.main_rank:
            self.distributed.barrier()  # until rank 0 has written the files
            return json.loads(report_path.read_text())
        wm_path = save_checkpoint(self.out / "world_model.safetensors", self.world_model.cpu(), game=self.game,
                                  action_meanings=self.action_meanings, start_bank=self.wm_trainer.start_bank(),
                                  provenance={"preset": self.preset_name, "epochs": self.state["epoch"],
                                              "environment": self.environment.describe(),
                                              "env_steps": self.state["env_steps"],
                                              "dataset_steps": self.dataset.num_steps})
        self.world_model.to(self.device)
        if self.sb3 is None:
            agent_path = save_actor_critic(self.out / "actor_critic.safetensors", self.actor_critic, self.game)
        else:
            agent_path = self.sb3.export(self.out)
        report = {"game": self.game, "preset": self.preset_name, "epochs": self.state["epoch"],
                  "collect_epochs": self.state["collect_epochs"],
                  "env_steps": self.state["env_steps"], "dataset_steps": self.dataset.num_steps,
                  "dataset_episodes": len(self.dataset), "seconds_per_stage": self.state["seconds"],
                  "world_model_updates": self.wm_trainer.steps,
                  "actor_critic_updates": None if self.ac_trainer is None else self.ac_trainer.steps,
                  "agent": self.agent_name if self.sb3 is None else self.sb3.name,
                  "imagined_steps": self.sb3.steps if self.sb3 is not None else
                  self.ac_trainer.steps * self.preset.imagination.batch_size * self.preset.imagination.backup_every,
                  "final_evaluation": final, "random_evaluation": random, "evaluations": self.state["evaluations"],
                  "environment": self.environment.describe(),
                  "world_model": str(wm_path), "agent_file": str(agent_path),
                  "actor_critic": str(agent_path) if self.sb3 is None else None,
                  "precision": {"training": self.precision, "dream": self.dream_precision}}
        write_json_atomic(self.progress_path, self.state)
        write_json_atomic(report_path, report)
        self.distributed.barrier()
        return report


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m training.pipeline --game Pong --preset demo``."""
    parser = argparse.ArgumentParser(description="Run DIAMOND end to end on one Atari game (resumable).")
    add_environment_arguments(parser, game_default="Pong")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                        help="the run's size: paper (DIAMOND's), small, demo (minutes on a CPU), cpu (a small image "
                             "environment such as a MiniGrid maze on a 2-core CPU) or micro (a smoke test)")
    add_preset_override_argument(parser)
    parser.add_argument("--out", default=None, help="run folder (default runs/<game>-<preset>)")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    add_speed_arguments(parser)
    parser.add_argument("--agent", default=ACTOR_CRITIC,
                        help="the agent trained in the dream: DIAMOND's actor-critic (default), or any "
                             "stable-baselines3 algorithm by name (ppo, a2c, dqn, ...)")
    add_algo_kwargs_argument(parser, "--agent's SB3")
    parser.add_argument("--dream-precision", choices=PRECISIONS, default=None,
                        help="precision of the dream the actor-critic learns in (default: --precision, else fp32 "
                             "as DIAMOND; bf16 is faster on a bf16 device)")
    parser.add_argument("--save-minutes", type=float, default=SAVE_MINUTES,
                        help=f"minutes of training between saved states inside an epoch: a killed run loses at most "
                             f"this (default {SAVE_MINUTES:g}; 0 saves after every update)")
    args = parser.parse_args(argv)
    environment = environment_from_arguments(args)
    out = args.out or f"runs/{environment.name}-{args.preset}"
    pipeline = Pipeline(environment, out, args.preset, device=args.device, seed=args.seed, precision=args.precision,
                        compile=args.compile, dream_precision=args.dream_precision, agent=args.agent,
                        algo_kwargs=args.algo_kwargs, preset_overrides=args.preset_overrides,
                        save_minutes=args.save_minutes)
    try:
        report = pipeline.run()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: inside a training stage the run saved itself on the way out
        print(f"interrupted: {out} holds the run as it was last saved; run the same command to continue",
              file=sys.stderr)
        raise SystemExit(130) from None
    pipeline.distributed.close()
    if not pipeline.main_rank:
        return
    final = report["final_evaluation"]
    random = report["random_evaluation"]
    print(f"{report['game']} ({report['preset']}): {report['env_steps']} real steps, final score "
          f"{final['mean']:.1f} +- {final['std']:.1f} over {final['episodes']} episodes, HNS {final['hns']}")
    for name, record in (("agent trained in the dream", final), ("random agent, the same episodes", random)):
        low, high = record["ci95"]
        print(f"  {name}: mean return {record['mean']:.3f}, 95% interval [{low:.3f}, {high:.3f}] over "
              f"{record['episodes']} episodes")
    verdict = ("beats random" if final["ci95"][0] > random["ci95"][1] else
               "below random" if final["ci95"][1] < random["ci95"][0] else "not apart from random")
    print(f"  the agent {verdict} (95% intervals)")
    print(f"report: {Path(out) / 'report.json'}")
    env_id = f"DiamondDream/{report['game']}-v0" if environment.is_atari else "DiamondDream/Dream-v0"
    print(f"world model: {report['world_model']}  (gym.make('{env_id}', checkpoint=...))")
    print(f"agent ({report['agent']}): {report['agent_file']}")


if __name__ == "__main__":
    main()
