"""DIAMOND end to end: collect real data, train the world model, train the agent in it, evaluate.

    python -m training.pipeline --game Breakout --preset paper --device cuda --precision bf16 --compile
    python -m training.pipeline --game Pong --preset demo          # minutes on a CPU

Per epoch (REFERENCE.md): collect real steps (random in the first epoch, then the agent with epsilon
0.01), update the denoiser, the reward/termination model and the actor-critic ``*_steps_per_epoch``
times each, evaluate every ``eval_every`` epochs. The run folder holds everything; re-running the same
command resumes after the last finished stage (collection is never repeated). At the end it writes
``world_model.safetensors`` (for ``gym.make``), ``actor_critic.safetensors`` and ``report.json``.

Data-parallel: ``torchrun --nproc_per_node N -m training.pipeline ...`` splits every update's batch
(the preset's, which stays the global batch: N must divide it) and the imagined dreams across N
processes, one device each (training.distributed). Rank 0 collects the real data, evaluates and
writes every file; the others wait for it and re-read the dataset before training on it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from gym_diamond import WorldModel, save_checkpoint
from gym_diamond.acceleration import Acceleration, default_precision
from gym_diamond.atari import game_to_name, make_atari_env
from training.actor_critic import ActorCritic, ActorCriticConfig
from training.agent_io import save_actor_critic
from training.agents import ActorCriticAgent, RandomAgent
from training.atari import make_vector_atari
from training.collect import Collector
from training.dataset import EpisodeDataset
from training.distributed import init_distributed
from training.evaluate import evaluate
from training.files import write_json_atomic
from training.imagination import ImaginationConfig, ImaginationTrainer
from training.presets import PipelinePreset, get_preset
from training.state import load_state, save_state
from training.world_model import (
    MODEL_PRESETS,
    CsvLog,
    WorldModelTrainer,
    WorldModelTrainingConfig,
    add_speed_arguments,
)

STAGES = ("collect", "world_model", "actor_critic", "evaluate")


class Pipeline:
    """One run folder and the objects that train in it; ``run()`` goes on from wherever it stopped."""

    def __init__(self, game: str, out: str | Path, preset: str | PipelinePreset = "demo", *,
                 device: str | torch.device | None = None, seed: int = 0, progress: bool = True,
                 precision: str | None = None, compile: bool = False) -> None:
        """``precision`` and ``compile`` are speed switches of every network, training and dream alike; they
        are not part of the run's settings, so a run may resume with others. ``precision=None`` trains the
        networks in fp32 and dreams (the actor-critic's imagination) in the device's default precision
        (``gym_diamond.acceleration.default_precision``): bf16 training cost dream fidelity in our A/B
        runs (benchmarks/README.md), bf16 dreams of a trained model did not."""
        self.game = game_to_name(game)
        self.preset_name = preset if isinstance(preset, str) else "custom"
        self.preset = get_preset(preset) if isinstance(preset, str) else preset
        self.out = Path(out)
        self.distributed, self.device = init_distributed(device)
        self.main_rank = self.distributed.is_main
        self.seed, self.progress = seed, progress and self.main_rank
        for name, batch in (("batch_size", self.preset.batch_size),
                            ("imagination_batch_size", self.preset.imagination_batch_size)):
            if batch % self.distributed.world_size:
                raise ValueError(f"the preset's {name} {batch} does not split over {self.distributed.world_size} "
                                 f"processes: use a number of processes that divides it")
        if self.main_rank:
            self.out.mkdir(parents=True, exist_ok=True)
            self._check_run_config()
        self.distributed.barrier()
        probe = make_atari_env(self.game)
        self.action_meanings = probe.get_action_meanings()
        probe.close()
        n = len(self.action_meanings)
        p = self.preset
        torch.manual_seed(seed)
        self.precision, self.compile = precision or "fp32", compile  # the trainers'
        self.dream_precision = precision or default_precision(self.device)
        self.world_model = WorldModel(MODEL_PRESETS[p.world_model](n)).to(self.device)
        # the dream; compile=True compiles the modules themselves
        self.world_model.accelerate(dataclasses.replace(Acceleration.default_for(self.device),
                                                        precision=self.dream_precision))
        self.actor_critic = ActorCritic(ActorCriticConfig(n, channels=p.actor_critic_channels,
                                                          lstm_dim=p.actor_critic_lstm_dim)).to(self.device)
        self.progress_path = self.out / "progress.json"
        self.state_path = self.out / "train_state.safetensors"
        self.state = {"epoch": 0, "collected_epochs": 0, "env_steps": 0, "seconds": dict.fromkeys(STAGES, 0.0),
                      "evaluations": [], "dataset_episodes": 0}
        self._saved: dict[str, Any] | None = load_state(self.state_path) if self.state_path.exists() else None
        if self.progress_path.exists():
            self.state = json.loads(self.progress_path.read_text())
        saved_progress = (self._saved or {}).get("progress")
        if saved_progress is not None and saved_progress["epoch"] > self.state["epoch"]:
            self.state = saved_progress  # killed between the training state and progress.json: the state is newer
        # rank 0 opens the dataset first (opening recovers listed-late episodes, truncation deletes some):
        # the other ranks open it once it is settled
        if self.main_rank:
            self.dataset = EpisodeDataset(self.out / "data", game=self.game)
            if "dataset_episodes" in self.state:  # episodes a killed run stored after its last save: collected again
                self.dataset.truncate(min(self.state["dataset_episodes"], len(self.dataset)))
        self.distributed.barrier()
        if not self.main_rank:
            self.dataset = EpisodeDataset(self.out / "data", game=self.game)
        self.logs = {stage: CsvLog(self.out / f"{stage}.csv")  # one CSV per stage: each has its own columns
                     for stage in ("collect", "world_model", "actor_critic", "evaluate")}
        if self.main_rank:
            self.logs["collect"].drop_after(self.state["collected_epochs"], key="epoch")  # rows a killed run
            for stage in ("world_model", "actor_critic"):  # wrote after its last save are redone on resume
                self.logs[stage].drop_after(self.state["epoch"], key="epoch")
        self.wm_trainer: WorldModelTrainer | None = None
        self.ac_trainer: ImaginationTrainer | None = None
        self.collector: Collector | None = None

    def _check_run_config(self) -> None:
        """A run folder belongs to one game, preset and seed; reusing it for another is an error."""
        config = {"game": self.game, "preset": self.preset_name, "seed": self.seed, **self.preset.to_dict()}
        config = json.loads(json.dumps(config))
        path = self.out / "config.json"
        if path.exists():
            saved = json.loads(path.read_text())
            if saved != config:
                diff = sorted(k for k in set(saved) | set(config) if saved.get(k) != config.get(k))
                raise ValueError(f"{self.out} holds a run with other settings ({', '.join(diff)}); "
                                 f"use another --out or the same arguments")
        else:
            write_json_atomic(path, config)

    # ------------------------------------------------------------------ stages
    def _timed(self, stage: str, start: float) -> None:
        self.state["seconds"][stage] += time.perf_counter() - start

    def _collect(self, epoch: int) -> None:
        """Rank 0 plays the real game; every rank then sees the new episodes and the same progress."""
        if self.main_rank:
            self._collect_here(epoch)
        self.distributed.barrier()
        self.state = self.distributed.broadcast(self.state)
        if not self.main_rank:  # rank 0's dataset object appended the episodes itself
            self.dataset.refresh()

    def _collect_here(self, epoch: int) -> None:
        p, t0 = self.preset, time.perf_counter()
        if self.collector is None:
            env = make_vector_atari(self.game, 1, done_on_life_loss=True, seed=self.seed + 1000 * epoch)
            self.collector = Collector(env, self.dataset, self._real_agent(random=True))
        random_epoch = epoch == 0
        self.collector.policy = self._real_agent(random=random_epoch)
        steps = p.initial_random_steps if random_epoch else p.collect_steps_per_epoch
        stats = self.collector.collect(steps, progress=self.progress)
        while self.dataset.num_steps == 0:  # training needs one finished episode (a Pong game can be long)
            more = self.collector.collect(p.collect_steps_per_epoch)
            steps += more.steps
        self.state["env_steps"] += steps
        self.state["collected_epochs"] = epoch + 1
        self._timed("collect", t0)
        self.logs["collect"].write({"epoch": epoch + 1, "env_steps": self.state["env_steps"],
                        "dataset_steps": self.dataset.num_steps, "episodes": len(self.dataset),
                        **{k: v for k, v in vars(stats).items() if isinstance(v, (int, float))}})
        self._save()

    def _real_agent(self, random: bool) -> Any:
        if random:
            return RandomAgent(len(self.action_meanings), seed=self.seed)
        return ActorCriticAgent(self.actor_critic, 1, epsilon=self.preset.epsilon, seed=self.seed)

    def _stage_bar(self, total: int, desc: str, unit: str) -> tqdm:
        """A bar inside the epoch bar, so a long stage shows it is moving (gone when the stage ends)."""
        return tqdm(range(total), desc=desc, unit=unit, leave=False, disable=not self.progress)

    def _trainers(self) -> None:
        if self.wm_trainer is not None:
            return
        p, n = self.preset, self.distributed.world_size
        self.wm_trainer = WorldModelTrainer(self.world_model, self.dataset, WorldModelTrainingConfig(
            batch_size=p.batch_size // n, rew_end_sequence_length=p.rew_end_sequence_length,
            precision=self.precision, compile=self.compile), seed=self.seed, distributed=self.distributed)
        self.ac_trainer = ImaginationTrainer(self.world_model, self.actor_critic, self.dataset, ImaginationConfig(
            horizon=p.horizon, batch_size=p.imagination_batch_size // n, precision=self.precision,
            compile=self.compile), seed=self.seed, distributed=self.distributed)
        if self._saved is not None:
            self.wm_trainer.load_state_dict(self._saved["world_model"])
            self.ac_trainer.load_state_dict(self._saved["actor_critic"])
            self._saved = None

    def _train(self, epoch: int) -> None:
        p = self.preset
        self._trainers()
        t0 = time.perf_counter()
        for _ in self._stage_bar(p.world_model_steps_per_epoch, f"epoch {epoch + 1}: world model", "update"):
            scalars = {**self.wm_trainer.denoiser_step(), **self.wm_trainer.rew_end_step()}
        self._timed("world_model", t0)
        if self.main_rank:
            self.logs["world_model"].write({"epoch": epoch + 1, **scalars})
        t0 = time.perf_counter()
        for _ in self._stage_bar(p.actor_critic_steps_per_epoch, f"epoch {epoch + 1}: actor-critic", "update"):
            scalars = self.ac_trainer.step()
        self._timed("actor_critic", t0)
        if self.main_rank:
            self.logs["actor_critic"].write({"epoch": epoch + 1, **scalars})

    def _evaluate(self, episodes: int) -> dict[str, Any]:
        """Rank 0 scores the agent in the real game; every rank gets the record."""
        record = self._evaluate_here(episodes) if self.main_rank else None
        return self.distributed.broadcast(record)

    def _evaluate_here(self, episodes: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        agent = ActorCriticAgent(self.actor_critic, min(8, episodes), seed=self.seed)
        result = evaluate(agent, self.game, episodes, num_envs=min(8, episodes), seed=self.seed + 10_000,
                          progress=self.progress)
        self._timed("evaluate", t0)
        record = {"epoch": self.state["epoch"], "env_steps": self.state["env_steps"], "mean": result.mean,
                  "std": result.std, "hns": result.hns, "episodes": episodes, "returns": result.returns}
        self.logs["evaluate"].write({"epoch": self.state["epoch"], "env_steps": self.state["env_steps"],
                                     "mean": result.mean, "std": result.std, "hns": result.hns})
        return record

    def _save(self) -> None:
        """Commit the run: the trainers (with the progress they belong to), then progress.json."""
        self.state["dataset_episodes"] = len(self.dataset)
        if not self.main_rank:
            return
        if self.wm_trainer is not None:
            save_state(self.state_path, {"world_model": self.wm_trainer.state_dict(),
                                         "actor_critic": self.ac_trainer.state_dict(), "progress": self.state})
        write_json_atomic(self.progress_path, self.state)

    # --------------------------------------------------------------------- run
    def run(self, stop_after_epochs: int | None = None) -> dict[str, Any]:
        """Run (or resume) to the end; ``stop_after_epochs`` stops early (to test resumption)."""
        p = self.preset
        bar = tqdm(total=p.epochs, initial=self.state["epoch"], desc=f"DIAMOND {self.game}", unit="epoch",
                   disable=not self.progress)
        try:
            while self.state["epoch"] < p.epochs:
                epoch = self.state["epoch"]
                if stop_after_epochs is not None and epoch >= stop_after_epochs:
                    return self.state
                if self.state["collected_epochs"] <= epoch:
                    self._collect(epoch)
                self._train(epoch)
                self.state["epoch"] = epoch + 1
                if p.eval_every and (epoch + 1) % p.eval_every == 0 and epoch + 1 < p.epochs:
                    self.state["evaluations"].append(self._evaluate(p.eval_episodes))
                if (epoch + 1) % p.save_every == 0 or epoch + 1 == p.epochs:
                    self._save()
                bar.update(1)
        finally:
            bar.close()
        return self._finish()

    def _finish(self) -> dict[str, Any]:
        report_path = self.out / "report.json"
        if report_path.exists():
            return json.loads(report_path.read_text())
        self._trainers()
        final = self._evaluate(self.preset.final_eval_episodes)
        if not self.main_rank:
            self.distributed.barrier()  # until rank 0 has written the files
            return json.loads(report_path.read_text())
        wm_path = save_checkpoint(self.out / "world_model.safetensors", self.world_model.cpu(), game=self.game,
                                  action_meanings=self.action_meanings, start_bank=self.wm_trainer.start_bank(),
                                  provenance={"preset": self.preset_name, "epochs": self.state["epoch"],
                                              "env_steps": self.state["env_steps"],
                                              "dataset_steps": self.dataset.num_steps})
        self.world_model.to(self.device)
        ac_path = save_actor_critic(self.out / "actor_critic.safetensors", self.actor_critic, self.game)
        report = {"game": self.game, "preset": self.preset_name, "epochs": self.state["epoch"],
                  "env_steps": self.state["env_steps"], "dataset_steps": self.dataset.num_steps,
                  "dataset_episodes": len(self.dataset), "seconds_per_stage": self.state["seconds"],
                  "world_model_updates": self.wm_trainer.steps, "actor_critic_updates": self.ac_trainer.steps,
                  "final_evaluation": final, "evaluations": self.state["evaluations"],
                  "world_model": str(wm_path), "actor_critic": str(ac_path),
                  "precision": {"training": self.precision, "dream": self.dream_precision}}
        write_json_atomic(self.progress_path, self.state)
        write_json_atomic(report_path, report)
        self.distributed.barrier()
        return report


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m training.pipeline --game Pong --preset demo``."""
    parser = argparse.ArgumentParser(description="Run DIAMOND end to end on one Atari game (resumable).")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--preset", default="demo", help="paper, small, demo or micro")
    parser.add_argument("--out", default=None, help="run folder (default runs/<game>-<preset>)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--seed", type=int, default=0)
    add_speed_arguments(parser)
    args = parser.parse_args(argv)
    out = args.out or f"runs/{game_to_name(args.game)}-{args.preset}"
    pipeline = Pipeline(args.game, out, args.preset, device=args.device, seed=args.seed, precision=args.precision,
                        compile=args.compile)
    report = pipeline.run()
    pipeline.distributed.close()
    if not pipeline.main_rank:
        return
    final = report["final_evaluation"]
    print(f"{report['game']} ({report['preset']}): {report['env_steps']} real steps, final score "
          f"{final['mean']:.1f} +- {final['std']:.1f} over {final['episodes']} episodes, HNS {final['hns']}")
    print(f"report: {Path(out) / 'report.json'}")
    print(f"world model: {report['world_model']}  (gym.make('DiamondDream/{report['game']}-v0', checkpoint=...))")
    print(f"agent: {report['actor_critic']}")


if __name__ == "__main__":
    main()
