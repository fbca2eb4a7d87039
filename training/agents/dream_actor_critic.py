"""Train DIAMOND's actor-critic inside a fixed world model, and score it in the real game as it learns.

    python -m training.agents.dream_actor_critic --checkpoint runs/boxing-wm/world_model.safetensors \\
        --data data/boxing --out runs/boxing-ac --updates 5000 --eval-every 500

The world model stays frozen: this is DIAMOND's claim in its purest form, an agent that never sees the
real game while it learns (its ``Trainer.train_agent`` with the world model's updates taken out). The
actor-critic, its loss and its dreams are DIAMOND's (``training.agents.imagination``); the dreams start from
contexts of ``--data``, the dataset the world model was trained on.

The control, what the dream bought: ``--train-in real`` trains the same actor-critic with the same loss
on real games instead (``training.agents.real_game_env``), ``--batch-size`` games side by side, each update
learning from batch size x 15 real steps; give it ``--updates`` so that it sees as many real steps as the
dream was learnt from (100,000 / 480 = 208 updates for Atari 100k):

    python -m training.agents.dream_actor_critic --train-in real --game Boxing --out runs/boxing-ac-real \
        --updates 208 --eval-every 52 --checkpoint runs/boxing-wm/world_model.safetensors

Every ``--eval-every`` updates (and at update 0 and at the end) the agent is judged twice:

- in the real game: ``--eval-episodes`` full episodes (the Atari 100k test protocol,
  ``training.agents.evaluate``), mean score with its 95% bootstrap interval and human-normalised score;
- in the dream, on its own frames: ``--dream-eval-steps`` steps with no time limit, counting reward signs
  per 1,000 steps, beside the same rate in the real episodes. Where the dream's rate climbs and the
  game's does not, the agent has found a flaw of the dream rather than a way to play.

The run folder holds ``evaluations.csv`` (one row per evaluation: updates, agent steps, CPU and wall seconds, real
score and interval, HNS, reward-sign rates in dream and game), ``learning_curve.png`` (drawn after each
evaluation), ``training.csv`` (the loss scalars, each row the mean over the updates since the row before),
``agents/actor_critic_<updates>.safetensors`` (each evaluated agent, its scores in its metadata),
``actor_critic.safetensors`` (the latest) and ``train_state.safetensors``. Running the same command again resumes
from the last save (``--save-every``); a run folder refuses other settings.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from gym_diamond import load_checkpoint, resolve_device
from gym_diamond.acceleration import PRECISIONS, Acceleration
from gym_diamond.checkpoint import Checkpoint, read_metadata
from gym_diamond.errors import UserError
from gym_diamond.integrity import DIGEST_KEY
from gym_diamond.nn.actor_critic import ActorCritic, ActorCriticConfig
from training.agents.checkpoints import save_actor_critic
from training.agents.evaluate import EVALUATION_SEED_OFFSET, REAL_EPISODE_CAP, evaluate
from training.agents.imagination import ImaginationConfig, ImaginationTrainer
from training.agents.real_game_env import RealGameEnv
from training.agents.rollouts import count_events, make_dream_env
from training.data.dataset import EpisodeDataset
from training.data.environments import RealEnvironment, add_environment_arguments, environment_from_arguments
from training.data.policies import ActorCriticAgent
from training.runtime.cli import add_device_argument, user_errors
from training.runtime.csv_log import ScalarMeans
from training.runtime.report import draw_learning_curve
from training.runtime.run_folder import RunFolder, RunSettingsError
from training.runtime.state import load_state, save_state

__all__ = ["DreamTrainingSettings", "RunSettingsError", "train_actor_critic_in_dream"]


TRAIN_IN = ("dream", "real")


@dataclass(frozen=True)
class DreamTrainingSettings:
    """What a run is: the settings a resumed run must repeat (speed switches are not among them)."""

    updates: int
    train_in: str = "dream"  # or "real": the control, the same actor-critic and loss on real games
    eval_every: int = 500
    eval_episodes: int = 8
    eval_max_steps: int = REAL_EPISODE_CAP  # agent steps before a real episode is cut
    dream_eval_steps: int = 4000
    seed: int = 0
    channels: tuple[int, ...] = ActorCriticConfig.channels  # DIAMOND's actor-critic
    lstm_dim: int = ActorCriticConfig.lstm_dim
    # uniform start contexts: DIAMOND's recency weights favour the newest episodes of a dataset that grows as the
    # agent plays; this one is fixed
    imagination: ImaginationConfig = field(default_factory=lambda: ImaginationConfig(sample_weights=None))

    def __post_init__(self) -> None:
        for name, least in (("updates", 0), ("eval_every", 0), ("eval_episodes", 1), ("eval_max_steps", 1),
                            ("dream_eval_steps", 0)):
            if getattr(self, name) < least:
                raise UserError(f"{name} must be >= {least}, got {getattr(self, name)}")
        if self.train_in not in TRAIN_IN:
            raise UserError(f"train_in must be one of {TRAIN_IN}, got {self.train_in!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the run folder's config.json); speed switches left out."""
        return json.loads(json.dumps({**asdict(self), "imagination": self.imagination.run_settings()}))

    @property
    def steps_per_update(self) -> int:
        """Agent steps one update learns from (dreamed, or real in the control): dreams x steps per update."""
        return self.imagination.batch_size * self.imagination.backup_every

    def evaluates_at(self, updates: int) -> bool:
        """Whether the agent is judged after ``updates`` updates: at 0, every ``eval_every``, and at the end."""
        return updates == 0 or updates == self.updates or (self.eval_every > 0 and updates % self.eval_every == 0)


def _tensor_digest(checkpoint: Path) -> str | None:
    """The sha256 of a checkpoint's tensors as saved with it (None for a file saved before digests)."""
    return read_metadata(checkpoint).get(DIGEST_KEY)


def _check_run_folder(folder: RunFolder, environment: RealEnvironment, checkpoint: Path | None, data: Path | None,
                      settings: DreamTrainingSettings) -> None:
    # an Atari run names its game alone, as before any environment could be trained in
    where = {"game": environment.name, **({} if environment.is_atari else {"environment": environment.describe()})}
    config = {**where, "checkpoint": checkpoint and str(checkpoint.resolve()),
              "world_model_digest": checkpoint and _tensor_digest(checkpoint),
              "data": data and str(data.resolve()), **settings.to_dict()}
    saved = folder.saved_settings()
    if saved is not None and saved.get("world_model_digest") != config["world_model_digest"]:
        raise RunSettingsError(f"{folder.path} holds a run in another world model: {checkpoint} is not the file it "
                               f"started with (its tensors differ, or the run is older than this check); "
                               f"use another --out")
    folder.guard(config, may_grow=("updates",))  # a resumed run trains on towards a later --updates


def _dream_sign_rate(checkpoint: Checkpoint, actor_critic: ActorCritic, steps: int, num_envs: int,
                     seed: int) -> float:
    """Reward signs per 1,000 steps of the agent playing the dream on its own frames (no time limit)."""
    env = make_dream_env(checkpoint, num_envs)
    try:
        agent = ActorCriticAgent(actor_critic, num_envs, seed=seed)
        counts = count_events(env, agent, steps, checkpoint.game, seed=seed)
    finally:
        env.close()
    return 1000.0 * (counts.positive_rewards - counts.negative_rewards) / counts.steps


def _evaluate(environment: RealEnvironment, checkpoint: Checkpoint | None, actor_critic: ActorCritic,
              settings: DreamTrainingSettings, progress: bool) -> dict[str, Any]:
    """The agent's real-game score (with interval) and its reward-sign rates in the game and in the dream (when
    there is one)."""
    num_envs = min(8, settings.eval_episodes)
    agent = ActorCriticAgent(actor_critic, num_envs, seed=settings.seed)
    real = evaluate(agent, environment, settings.eval_episodes, num_envs=num_envs,
                    seed=settings.seed + EVALUATION_SEED_OFFSET, max_steps=settings.eval_max_steps, progress=progress)
    dream_rate = math.nan
    if settings.dream_eval_steps and checkpoint is not None:
        dream_rate = _dream_sign_rate(checkpoint, actor_critic, settings.dream_eval_steps, 8, settings.seed)
    return {"real_mean": real.mean, "real_low": real.interval[0], "real_high": real.interval[1],
            "real_std": real.std, "hns": math.nan if real.hns is None else real.hns, "episodes": len(real.returns),
            "real_mean_length": float(np.mean(real.lengths)), "real_sign_rate": real.sign_rate,
            "dream_sign_rate": dream_rate}


def train_actor_critic_in_dream(checkpoint: str | Path | None, data: str | Path | None, out: str | Path,
                                settings: DreamTrainingSettings, *, game: str | RealEnvironment | None = None,
                                device: str | torch.device = "cpu", dream_precision: str = "fp32",
                                save_every: int = 100, log_every: int = 10, progress: bool = True,
                                stop_after: int | None = None) -> list[dict[str, Any]]:
    """Train (or resume) to ``settings.updates``; returns every evaluation's row. ``stop_after`` stops early
    after that many updates in this call (to test resumption).

    Trained in the dream, ``checkpoint`` and ``data`` are needed; the agent is judged in the environment the
    checkpoint's data came from. Trained in the real game (the control), neither is: ``game`` names the
    environment (an Atari game, or any ``RealEnvironment``), and a ``checkpoint``, if given, is only where the
    agent's dream rate is measured.
    """
    if save_every < 1 or log_every < 1:
        raise UserError(f"save_every and log_every must be >= 1, got {save_every} and {log_every}")
    if dream_precision not in PRECISIONS:
        raise UserError(f"dream_precision must be one of {PRECISIONS}, got {dream_precision!r}")
    in_dream = settings.train_in == "dream"
    if in_dream and (checkpoint is None or data is None):
        raise UserError("training in the dream needs the world model (checkpoint) and its dataset (data)")
    checkpoint, data, out = (Path(checkpoint) if checkpoint else None), (Path(data) if data else None), Path(out)
    ckpt = load_checkpoint(checkpoint, device) if checkpoint is not None else None
    named = RealEnvironment(game=game) if isinstance(game, str) else game
    if ckpt is not None and named is not None and named.name != ckpt.game:
        raise UserError(f"{checkpoint} dreams {ckpt.game}, not {named.name}")
    if ckpt is None and named is None:
        raise UserError("name the game (training in the real game without a checkpoint)")
    environment = named or RealEnvironment.of_checkpoint(ckpt.game, ckpt.provenance)
    with RunFolder(out, "actor-critic training run") as folder:
        _check_run_folder(folder, environment, checkpoint, data if in_dream else None, settings)
        return _train(ckpt, checkpoint, data, folder, environment, settings, device, dream_precision, save_every,
                      log_every, progress, stop_after)


def _train(ckpt: Checkpoint | None, checkpoint: Path | None, data: Path | None, folder: RunFolder,
           environment: RealEnvironment,
           settings: DreamTrainingSettings, device: str | torch.device, dream_precision: str, save_every: int,
           log_every: int, progress: bool, stop_after: int | None) -> list[dict[str, Any]]:
    """``train_actor_critic_in_dream``'s work, its run folder locked."""
    in_dream, game = settings.train_in == "dream", environment.name
    if ckpt is not None:
        ckpt.world_model.eval().requires_grad_(False)
        ckpt.world_model.accelerate(Acceleration(precision=dream_precision, channels_last=True))
    num_actions = ckpt.world_model.config.num_actions if ckpt is not None else len(environment.action_meanings())
    torch.manual_seed(settings.seed)
    actor_critic = ActorCritic(ActorCriticConfig(num_actions, channels=settings.channels,
                                                 lstm_dim=settings.lstm_dim)).to(device)
    if in_dream:
        dataset = EpisodeDataset(data, game=game)
        if len(dataset) == 0:
            raise UserError(f"{data} holds no episodes: the dreams start from the world model's training data")
        trainer = ImaginationTrainer(ckpt.world_model, actor_critic, dataset, settings.imagination, seed=settings.seed)
    else:
        batch = settings.imagination.batch_size
        trainer = ImaginationTrainer(None, actor_critic, None, settings.imagination, seed=settings.seed,
                                     make_env=lambda: RealGameEnv(environment, batch, seed=settings.seed + 20_000,
                                                                  device=device))
    out = folder.path
    state_path = folder.file("train_state.safetensors")
    clock = {"cpu_seconds": 0.0, "wall_seconds": 0.0}
    if state_path.exists():
        saved = load_state(state_path)
        trainer.load_state_dict(saved["trainer"])
        clock = saved["clock"]
    training_log = folder.log("training.csv", resume_at=trainer.steps, key="update")
    eval_log = folder.log("evaluations.csv", resume_at=trainer.steps, key="update")
    evaluated = eval_log.logged("update")
    started_cpu, started_wall = time.process_time(), time.perf_counter()

    def elapsed() -> dict[str, float]:
        return {"cpu_seconds": clock["cpu_seconds"] + time.process_time() - started_cpu,
                "wall_seconds": clock["wall_seconds"] + time.perf_counter() - started_wall}

    def save() -> None:
        save_state(state_path, {"trainer": trainer.state_dict(), "clock": elapsed()})

    def judge() -> None:
        row = {"update": trainer.steps, "agent_steps": trainer.steps * settings.steps_per_update, **elapsed(),
               **_evaluate(environment, ckpt, actor_critic, settings, progress)}
        provenance = {"trained_in": settings.train_in, "world_model": checkpoint.name if in_dream else None,
                      "data": data.name if in_dream else None, "updates": trainer.steps,
                      "agent_steps": row["agent_steps"],
                      "real_game": {k: row[k] for k in ("real_mean", "real_low", "real_high", "episodes", "hns")}}
        (out / "agents").mkdir(exist_ok=True)
        save_actor_critic(out / "agents" / f"actor_critic_{trainer.steps}.safetensors", actor_critic, game,
                          provenance)
        eval_log.write(row)
        evaluated.add(trainer.steps)
        where = "a dream" if in_dream else "the real game"
        try:
            draw_learning_curve(out / "evaluations.csv", out / "learning_curve.png",
                                title=f"{game}: DIAMOND's actor-critic trained in {where}")
        except ModuleNotFoundError as err:  # matplotlib is an extra: the CSV holds the same figures
            warnings.warn(f"learning_curve.png not drawn: {err}", stacklevel=2)
        save_actor_critic(out / "actor_critic.safetensors", actor_critic, game, provenance)
        if progress:
            tqdm.write(f"update {trainer.steps}: real {row['real_mean']:.2f} [{row['real_low']:.2f}, "
                       f"{row['real_high']:.2f}] over {row['episodes']} episodes; reward signs per 1,000 steps: "
                       f"dream {row['dream_sign_rate']:.1f}, game {row['real_sign_rate']:.1f}")

    bar = folder.progress_bar(total=settings.updates, initial=trainer.steps, unit="update", enabled=progress,
                              desc=f"actor-critic in {game} ({settings.train_in})")
    done_here = 0
    window = ScalarMeans()
    try:
        while True:
            if settings.evaluates_at(trainer.steps) and trainer.steps not in evaluated:
                judge()
                save()
            if trainer.steps >= settings.updates or (stop_after is not None and done_here >= stop_after):
                break
            window.add(trainer.step())
            done_here += 1
            bar.update(1)
            if trainer.steps % log_every == 0:  # the mean over the updates since the last row
                training_log.write({"update": trainer.steps, **window.take()})
            if trainer.steps % save_every == 0:
                save()
    finally:
        bar.close()
        if not in_dream:
            trainer.env.close()
    save()
    return eval_log.rows()


@user_errors
def main(argv: list[str] | None = None) -> None:
    defaults = ImaginationConfig()
    parser = argparse.ArgumentParser(description="Train DIAMOND's actor-critic in a fixed world model; judge it in "
                                                 "the real game and in the dream as it learns.")
    parser.add_argument("--checkpoint", default=None, help="the world model (.safetensors); with --train-in real, "
                                                           "only where the agent's dream rate is measured")
    parser.add_argument("--data", default=None, help="the dataset it was trained on: the dreams' start contexts")
    parser.add_argument("--train-in", choices=TRAIN_IN, default="dream",
                        help="real: the control, the same actor-critic and loss on real games (updates x batch size "
                             "x 15 real steps)")
    add_environment_arguments(parser, required=False)  # default: the checkpoint's own environment
    parser.add_argument("--out", required=True, help="run folder (created, or resumed)")
    parser.add_argument("--updates", type=int, required=True, help="actor-critic updates in all (a rerun resumes)")
    parser.add_argument("--eval-every", type=int, default=DreamTrainingSettings.eval_every,
                        help="updates between evaluations (0: start and end)")
    parser.add_argument("--eval-episodes", type=int, default=DreamTrainingSettings.eval_episodes,
                        help="real episodes per evaluation")
    parser.add_argument("--dream-eval-steps", type=int, default=DreamTrainingSettings.dream_eval_steps,
                        help="dream steps per evaluation (0: none)")
    parser.add_argument("--seed", type=int, default=DreamTrainingSettings.seed)
    parser.add_argument("--channels", type=int, nargs=4, default=list(DreamTrainingSettings.channels),
                        help="actor-critic widths (DIAMOND's: 32 32 64 64)")
    parser.add_argument("--lstm-dim", type=int, default=DreamTrainingSettings.lstm_dim)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="dreams side by side")
    parser.add_argument("--horizon", type=int, default=defaults.horizon)
    parser.add_argument("--sample-weights", type=float, nargs="+", default=None,
                        help="recency weights of the start contexts, e.g. DIAMOND's 0.1 0.1 0.1 0.7 for a dataset that "
                             "grows as the agent plays (default: uniform, the dataset being fixed)")
    add_device_argument(parser)
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="the actor-critic's autocast")
    parser.add_argument("--dream-precision", choices=PRECISIONS, default=None,
                        help="the dream's (default: --precision)")
    parser.add_argument("--save-every", type=int, default=100, help="updates between saved states")
    args = parser.parse_args(argv)
    settings = DreamTrainingSettings(
        updates=args.updates, train_in=args.train_in, eval_every=args.eval_every, eval_episodes=args.eval_episodes,
        dream_eval_steps=args.dream_eval_steps, seed=args.seed, channels=tuple(args.channels),
        lstm_dim=args.lstm_dim, imagination=ImaginationConfig(
            batch_size=args.batch_size, horizon=args.horizon, precision=args.precision,
            sample_weights=tuple(args.sample_weights) if args.sample_weights else None))
    environment = environment_from_arguments(args) if args.game or args.env_id else None
    rows = train_actor_critic_in_dream(args.checkpoint, args.data, args.out, settings, game=environment,
                                       device=resolve_device(args.device), save_every=args.save_every,
                                       dream_precision=args.dream_precision or args.precision)
    best = max(rows, key=lambda r: r["real_mean"])
    updates = int(best["update"])
    print(f"best real score {best['real_mean']:.2f} [{best['real_low']:.2f}, {best['real_high']:.2f}] at update "
          f"{updates}: {Path(args.out) / 'agents' / f'actor_critic_{updates}.safetensors'}")

if __name__ == "__main__":
    main()
