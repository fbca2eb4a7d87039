"""Train any stable-baselines3 agent inside a dream, judged now and then in the real game.

    python -m training.agents.sb3 --algo ppo --game Pong --checkpoint wm.safetensors --steps 100000

From Python, one call::

    from training.agents.sb3 import train_sb3_agent
    run = train_sb3_agent("wm.safetensors", algo="ppo", steps=100_000, out="runs/pong-ppo")
    run.model.predict(obs)

The agent sees what SB3's Atari agents see from ``DreamSB3VecEnv``: 64x64 RGB uint8 frames, optionally
stacked (``VecFrameStack``), transposed for the CNN by SB3 itself. Every ``eval_every`` steps the
policy plays full real-game episodes (``training.agents.evaluate``) and the model is saved, so an
interrupted run loses at most that much; running the same call again resumes from the saved model.

Files in ``out``: ``model.zip`` (SB3's own format, for ``PPO.load``), ``policy.safetensors`` plus
``policy.json`` (the policy's weights without pickles, for ``safetensors.torch.load_model(policy, path)``),
``eval.csv`` (per evaluation: the real score with its 95% interval, reward signs per 1,000 real steps, and
the same rate in the dream over the training steps since the row before: where the two part, the agent
exploits the dream), ``sb3_log/progress.csv`` (SB3's own training log).
"""

from __future__ import annotations

import argparse
import inspect
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save_model
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecFrameStack, VecMonitor
from tqdm.auto import tqdm

from gym_diamond.atomic import replace_atomic, write_atomic
from gym_diamond.checkpoint import read_metadata
from gym_diamond.envs.sb3 import DreamSB3VecEnv
from gym_diamond.errors import UserError
from gym_diamond.integrity import DIGEST_KEY
from gym_diamond.registration import DEFAULT_MAX_EPISODE_STEPS
from training.agents.evaluate import REAL_EPISODE_CAP, evaluate
from training.agents.sb3_algorithms import algorithm_class
from training.data.environments import RealEnvironment
from training.data.policies import SB3Agent
from training.runtime.cli import add_algo_kwargs_argument, add_device_argument, user_errors
from training.runtime.csv_log import CsvLog
from training.runtime.files import write_json_atomic
from training.runtime.run_folder import RunFolder


def make_dream_vec_env(checkpoint: str | Path, num_envs: int, *, frame_stack: int = 1,
                       device: str | torch.device | None = None,
                       max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS) -> VecEnv:
    """The dream as SB3 agents expect it: episode statistics (``VecMonitor``) and optional frame stack."""
    if frame_stack < 1:
        raise UserError(f"frame_stack must be >= 1, got {frame_stack}")
    env: VecEnv = VecMonitor(DreamSB3VecEnv.from_checkpoint(checkpoint, num_envs, device=device,
                                                            max_episode_steps=max_episode_steps))
    if frame_stack > 1:
        env = VecFrameStack(env, n_stack=frame_stack)
    return env


def make_real_vec_env(environment: RealEnvironment, num_envs: int, *, seed: int = 0) -> VecEnv:
    """The real environment as SB3 agents see the dream: the same 64x64 RGB uint8 frames, whole episodes (Atari: to
    game over), episode statistics. For a control trained on real steps."""
    env = DummyVecEnv([environment.eval_env] * num_envs)
    env.seed(seed)  # environment i starts from seed + i
    return VecMonitor(env)


@dataclass
class SB3Run:
    """What ``train_sb3_agent`` leaves: the trained model, where it is saved, and its real-game scores."""

    model: BaseAlgorithm
    model_path: Path
    evaluations: list[dict[str, float]] = field(default_factory=list)


class _RealGameEval(BaseCallback):
    """Every ``every`` env steps (and at the end): save the model, play the real game, log the score."""

    def __init__(self, save: Any, game: RealEnvironment | None, every: int, episodes: int, frame_stack: int,
                 max_steps: int, log: CsvLog, seed: int) -> None:
        super().__init__()
        self.save, self.game, self.every, self.episodes = save, game, every, episodes
        self.frame_stack, self.max_steps, self.log, self.seed = frame_stack, max_steps, log, seed
        self.last = 0
        self.rows: list[dict[str, float]] = []
        self.dream_signs, self.dream_steps = 0.0, 0
        # CPU seconds of this process's training, on top of the last row's: a resumed run counts on from there
        earlier = log.rows()
        self.cpu_offset = earlier[-1].get("cpu_seconds", 0.0) if earlier else 0.0
        self.cpu_start = time.process_time()

    def _on_training_start(self) -> None:
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        rewards = np.asarray(self.locals["rewards"])  # the dream's, of the policy as it trains
        self.dream_signs += float(np.sign(rewards).sum())
        self.dream_steps += rewards.size
        if self.every and self.num_timesteps - self.last >= self.every:
            self.checkpoint()
        return True

    def checkpoint(self) -> None:
        self.last = self.num_timesteps
        self.save()
        # reward signs per 1,000 dream steps since the last row: beside the real game's, where they part the
        # agent exploits the dream
        dream_rate = 1000 * self.dream_signs / self.dream_steps if self.dream_steps else float("nan")
        self.dream_signs, self.dream_steps = 0.0, 0
        if self.game is None or self.episodes == 0:
            return
        agent = SB3Agent(self.model, deterministic=False, frame_stack=self.frame_stack)
        result = evaluate(agent, self.game, self.episodes, num_envs=min(8, self.episodes), seed=self.seed,
                          max_steps=self.max_steps)
        cpu_seconds = self.cpu_offset + time.process_time() - self.cpu_start  # evaluations included
        row = {"step": self.num_timesteps, "cpu_seconds": round(cpu_seconds, 1), "mean_return": result.mean,
               "std_return": result.std,
               "hns": float("nan") if result.hns is None else result.hns, "episodes": self.episodes,
               "low_return": result.interval[0], "high_return": result.interval[1],  # 95% bootstrap interval
               "sign_rate": result.sign_rate, "dream_sign_rate": dream_rate}
        self.rows.append(row)
        self.log.write(row)
        self.logger.record("real/mean_return", result.mean)
        if self.verbose or self.model.verbose:
            print(f"step {self.num_timesteps}: real {self.game.name} return {result.mean:.2f} +- {result.std:.2f}")


class _Progress(BaseCallback):
    """A tqdm bar over env steps showing the dream's mean episode return (SB3's own bar needs rich)."""

    def __init__(self, folder: RunFolder, total: int) -> None:
        super().__init__()
        self.folder, self.total = folder, total
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.bar = self.folder.progress_bar(total=self.total, initial=self.num_timesteps, desc="sb3 in dream",
                                            unit="step")

    def _on_step(self) -> bool:
        assert self.bar is not None
        self.bar.update(self.num_timesteps - self.bar.n)
        buffer = self.model.ep_info_buffer
        if buffer:
            self.bar.set_postfix(dream_return=f"{np.mean([e['r'] for e in buffer]):.2f}", refresh=False)
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.close()


def save_policy_safetensors(model: BaseAlgorithm, out: Path, algo: str, frame_stack: int) -> None:
    """The policy's weights as safetensors plus JSON: a pickle-free copy next to SB3's ``model.zip``."""
    # shared feature extractors stored once
    replace_atomic(out / "policy.safetensors", lambda tmp: save_model(model.policy, str(tmp)))
    meta = {"algo": algo, "policy_class": type(model.policy).__name__, "frame_stack": frame_stack,
            "observation_shape": list(model.observation_space.shape), "num_actions": int(model.action_space.n),
            "num_timesteps": int(model.num_timesteps)}
    write_json_atomic(out / "policy.json", meta)


def train_sb3_agent(checkpoint: str | Path, *, algo: str = "ppo", steps: int, out: str | Path,
                    game: str | RealEnvironment | None = None, num_envs: int = 8, frame_stack: int = 1,
                    policy: str = "CnnPolicy",
                    algo_kwargs: dict[str, Any] | None = None, device: str | torch.device | None = None,
                    max_episode_steps: int | None = DEFAULT_MAX_EPISODE_STEPS, eval_every: int = 10_000,
                    eval_episodes: int = 5,
                    eval_max_steps: int = REAL_EPISODE_CAP, seed: int = 0, progress: bool = True,
                    verbose: int = 0) -> SB3Run:
    """Train ``algo`` for ``steps`` env steps in the dream of ``checkpoint`` (resuming ``out`` if saved there).

    ``game`` is the real environment for evaluation: an Atari game's name or a ``RealEnvironment`` (default: the
    checkpoint's own, an Atari game or the Gymnasium environment its data came from; ``eval_episodes=0`` turns
    evaluation off). ``algo_kwargs`` go to the SB3 constructor (e.g. ``{"n_steps": 128}``); off-policy
    algorithms get ``buffer_size=min(100_000, steps)`` unless given, since SB3's default of a million
    64x64x3 frames would take 12 GB.
    """
    with RunFolder(out, "SB3 training run") as folder:
        if steps < 1:
            raise UserError(f"steps must be >= 1, got {steps}")
        if eval_every < 0 or eval_episodes < 0:
            raise UserError(f"eval_every and eval_episodes must be >= 0, got {eval_every} and {eval_episodes}")
        algo_cls = algorithm_class(algo)
        out = folder.path
        folder.guard({  # a resumed run is the same run: another dream or setting is refused
            "algo": algo_cls.__name__, "checkpoint": str(Path(checkpoint).resolve()),
            "world_model_digest": read_metadata(checkpoint).get(DIGEST_KEY), "num_envs": num_envs,
            "frame_stack": frame_stack, "policy": policy, "algo_kwargs": algo_kwargs or {},
            "max_episode_steps": max_episode_steps, "eval_every": eval_every, "eval_episodes": eval_episodes,
            "eval_max_steps": eval_max_steps, "seed": seed, "steps": steps,
            "environment": None if isinstance(game, str) or game is None else game.describe(),
            "game": game if isinstance(game, str) else None}, may_grow=("steps",))
        env = make_dream_vec_env(checkpoint, num_envs, frame_stack=frame_stack, device=device,
                                 max_episode_steps=max_episode_steps)
        if isinstance(game, str):
            game = RealEnvironment(game=game)
        elif game is None and eval_episodes:
            game = RealEnvironment.of_checkpoint(env.get_attr("game")[0], read_metadata(checkpoint)["provenance"])
        model_device = env.get_attr("device")[0]
        model_path = out / "model.zip"
        if model_path.exists():
            model = algo_cls.load(model_path, env=env, device=model_device)
            if model.num_timesteps >= steps:
                if _saved_policy_steps(out) != model.num_timesteps:  # killed between model.zip and its policy copy
                    save_policy_safetensors(model, out, algo_cls.__name__, frame_stack)
                env.close()
                return SB3Run(model, model_path, folder.log("eval.csv").rows())
        else:
            kwargs = dict(algo_kwargs or {})
            if "buffer_size" in constructor_parameters(algo_cls):
                kwargs.setdefault("buffer_size", min(100_000, steps))
            try:
                model = algo_cls(policy, env, seed=seed, device=model_device, verbose=verbose, **kwargs)
            except AssertionError as error:  # SB3 checks spaces with asserts
                env.close()
                raise UserError(f"{algo_cls.__name__} cannot train in a dream of discrete actions and image "
                                f"observations: {error}") from None

        # SB3's own log (progress.csv) in the run folder; left to itself SB3 makes a /tmp/SB3-<date> folder per run
        model.set_logger(configure(str(out / "sb3_log"), ["csv", "stdout"] if verbose else ["csv"]))

        def save() -> None:
            write_atomic(model_path, model.save)  # a kill mid-save keeps the previous model.zip whole
            save_policy_safetensors(model, out, algo_cls.__name__, frame_stack)

        total = _rounded_to_rollouts(model, steps)
        eval_log = folder.log("eval.csv", resume_at=model.num_timesteps)  # rows past the saved model are redone
        evaluation = _RealGameEval(save, game if eval_episodes else None, eval_every, eval_episodes, frame_stack,
                                   eval_max_steps, eval_log, seed)
        callbacks: list[BaseCallback] = [evaluation]
        if progress:
            callbacks.append(_Progress(folder, total))
        try:
            model.learn(total_timesteps=steps - model.num_timesteps, callback=callbacks, reset_num_timesteps=False)
            if evaluation.last != model.num_timesteps or not evaluation.rows:
                evaluation.checkpoint()
            else:  # evaluated at this step count, but the last policy update came after that save
                save()
        except KeyboardInterrupt:
            save()  # keep what was learnt; the same call resumes
            raise
        finally:
            env.close()
        return SB3Run(model, model_path, eval_log.rows())


def _saved_policy_steps(out: Path) -> int | None:
    """The step count of the policy copy in ``out`` (None if there is none)."""
    try:
        return int(json.loads((out / "policy.json").read_text())["num_timesteps"])
    except (OSError, ValueError, KeyError):
        return None


def _rounded_to_rollouts(model: BaseAlgorithm, steps: int) -> int:
    """The steps SB3 will take: on-policy algorithms only stop after whole rollouts (n_steps x num_envs)."""
    if not isinstance(model, OnPolicyAlgorithm):
        return steps
    rollout = model.n_steps * model.n_envs
    total = model.num_timesteps + -(-(steps - model.num_timesteps) // rollout) * rollout
    if total != steps:
        warnings.warn(f"{type(model).__name__} collects {model.n_steps} x {model.n_envs} = {rollout} steps per "
                      f"rollout and only stops after whole rollouts, so it will take {total} steps, not {steps}; "
                      f"pass algo_kwargs={{'n_steps': ...}} (--algo-kwargs) for a smaller rollout", stacklevel=3)
    return total


def constructor_parameters(cls: type) -> set[str]:
    """The keyword names an SB3 algorithm's constructor takes (which defaults apply to it)."""
    return set(inspect.signature(cls.__init__).parameters)


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m training.agents.sb3 --algo ppo --checkpoint wm.safetensors --steps N``."""
    parser = argparse.ArgumentParser(description="Train a stable-baselines3 agent in a DIAMOND dream.")
    defaults = {name: p.default for name, p in inspect.signature(train_sb3_agent).parameters.items()}
    parser.add_argument("--algo", default=defaults["algo"],
                        help="any SB3 algorithm for discrete actions: ppo, a2c, dqn")
    parser.add_argument("--game", default=None,
                        help="Atari game to evaluate in (default: the checkpoint's own environment, an Atari game or "
                             "the Gymnasium environment its data came from)")
    parser.add_argument("--checkpoint", required=True, help="world model checkpoint (.safetensors)")
    parser.add_argument("--steps", type=int, required=True, help="total env steps in the dream")
    parser.add_argument("--out", default=None, help="run folder (default: runs/<game>-<algo>)")
    parser.add_argument("--num-envs", type=int, default=defaults["num_envs"])
    parser.add_argument("--frame-stack", type=int, default=defaults["frame_stack"])
    parser.add_argument("--policy", default=defaults["policy"])
    add_algo_kwargs_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--max-episode-steps", type=int, default=defaults["max_episode_steps"])
    parser.add_argument("--eval-every", type=int, default=defaults["eval_every"],
                        help="env steps between real-game evaluations")
    parser.add_argument("--eval-episodes", type=int, default=defaults["eval_episodes"])
    parser.add_argument("--seed", type=int, default=defaults["seed"])
    args = parser.parse_args(argv)
    out = args.out or f"runs/{args.game or Path(args.checkpoint).stem}-{args.algo.lower()}"
    run = train_sb3_agent(args.checkpoint, algo=args.algo, steps=args.steps, out=out, game=args.game,
                          num_envs=args.num_envs, frame_stack=args.frame_stack, policy=args.policy,
                          algo_kwargs=args.algo_kwargs, device=args.device, max_episode_steps=args.max_episode_steps,
                          eval_every=args.eval_every, eval_episodes=args.eval_episodes, seed=args.seed)
    print(f"model: {run.model_path}")
    if run.evaluations:
        last = run.evaluations[-1]
        print(f"real-game return after {int(last['step'])} steps: {last['mean_return']:.2f} "
              f"+- {last['std_return']:.2f} (HNS {last['hns']:.3f})")


if __name__ == "__main__":
    main()
