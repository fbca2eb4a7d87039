"""Play a policy in real games and append the finished episodes to an ``EpisodeDataset``.

``Collector`` steps a vector env from ``training.data.vector_atari.make_vector_atari`` (or any gymnasium VectorEnv
with ``autoreset_mode`` SAME_STEP and 64x64x3 uint8 observations, e.g. ``SyncVectorEnv`` over
``gym_diamond.atari.AtariEnv``; ``info["life_loss"]`` is read when the env gives it). Episodes run on across
``collect`` calls: each env's unfinished episode is buffered and appended to the dataset when it ends.
``store_unfinished`` stores the unfinished episodes as they stand, so that they are trainable at once, and
replaces them as they grow (DIAMOND's collector does so at the end of each collection).
With ``make_vector_atari(..., done_on_life_loss=True)`` (the training protocol, as in DIAMOND's data
collection) an episode ends at each life loss (``terminated`` and ``life_loss`` on its last
transition) while the game goes on, and the next episode starts from that same frame.

Command line (uniform random actions, DIAMOND's first collection epoch)::

    python -m training.data.collect --game Breakout --out runs/breakout/data --steps 5000

``--policy follow`` plays ``training.data.scripted.BallFollower`` instead (Pong, Breakout), mixed with
``--epsilon`` random actions: data with rallies and broken bricks. Each run appends what played to
``collection.json`` in the dataset folder; ``training.world_model`` copies it into its checkpoint's
provenance.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv

from gym_diamond.atari import game_to_name
from gym_diamond.errors import UserError
from training.data.any_env import check_env_id
from training.data.dataset import Episode, EpisodeDataset
from training.data.environments import add_environment_arguments, environment_from_arguments
from training.data.policies import RandomAgent
from training.data.scripted import SCRIPTED_GAMES, BallFollower
from training.data.vector_atari import make_vector_atari
from training.runtime.cli import user_errors
from training.runtime.files import write_json_atomic
from training.runtime.progress import progress_bar
from training.runtime.run_folder import FolderLock

__all__ = ["COLLECTION_LOG", "FORMATS", "CollectStats", "Collector", "read_collection_log"]

FORMATS = ("gym-diamond", "minari")  # where --format writes: ours only, or ours and Minari's
COLLECTION_LOG = "collection.json"  # in the dataset folder: what played, run by run


@dataclass
class CollectStats:
    """What one ``collect`` call did. ``mean_return`` is NaN when no episode finished."""

    steps: int  # transitions collected, all envs together
    episodes_finished: int  # episodes appended to the dataset
    mean_return: float
    seconds: float
    steps_per_second: float
    returns: list[float] = field(default_factory=list)  # of the finished episodes, in order


class _Buffer:
    """The unfinished episode of one env."""

    def __init__(self, first_frame: np.ndarray) -> None:
        self.frames = [np.array(first_frame, dtype=np.uint8)]
        self.actions: list[int] = []
        self.rewards: list[float] = []
        self.terminated: list[bool] = []
        self.truncated: list[bool] = []
        self.life_loss: list[bool] = []

    def __len__(self) -> int:
        return len(self.actions)

    def add(self, action: int, reward: float, terminated: bool, truncated: bool, life_loss: bool,
            frame: np.ndarray) -> None:
        self.actions.append(action)
        self.rewards.append(reward)
        self.terminated.append(terminated)
        self.truncated.append(truncated)
        self.life_loss.append(life_loss)
        self.frames.append(np.array(frame, dtype=np.uint8))

    def pop(self) -> None:
        """Forget the last transition."""
        for column in (self.actions, self.rewards, self.terminated, self.truncated, self.life_loss, self.frames):
            column.pop()

    def episode(self) -> Episode:
        return Episode(
            frames=np.stack(self.frames),
            actions=np.asarray(self.actions, dtype=np.int64),
            rewards=np.asarray(self.rewards, dtype=np.float32),
            terminated=np.asarray(self.terminated, dtype=bool),
            truncated=np.asarray(self.truncated, dtype=bool),
            life_loss=np.asarray(self.life_loss, dtype=bool),
        )


class Collector:
    """Runs ``policy`` in ``env`` and appends every finished episode to ``dataset``.

    ``policy`` maps observations uint8 ``(n, 64, 64, 3)`` to actions ``(n,)``: a callable, or an agent
    of ``training.data.policies`` (its ``act(obs)``; its ``reset(mask)`` is called with the envs whose episode
    starts). It may be replaced between ``collect`` calls (``collector.policy = ...``). The env is
    reset on the first ``collect`` call, with its own seed (``make_vector_atari(seed=...)``).
    """

    def __init__(self, env: VectorEnv, dataset: EpisodeDataset, policy: Callable[[np.ndarray], np.ndarray] | Any,
                 *, progress: bool = False) -> None:
        mode = env.metadata.get("autoreset_mode")
        if mode != AutoresetMode.SAME_STEP:
            raise UserError(f"Collector needs a vector env with autoreset_mode SAME_STEP (make_vector_atari's), "
                            f"got {mode!r}")
        self.env, self.dataset, self.policy = env, dataset, policy
        self.progress = progress
        self.num_envs = env.num_envs
        self.total_steps = 0  # transitions collected over all calls
        self._obs: np.ndarray | None = None
        self._buffers: list[_Buffer] = []
        self._stored: list[int | None] = []  # per env: the dataset id of its unfinished episode, once stored

    @property
    def buffered_steps(self) -> int:
        """Transitions of unfinished episodes (in the dataset as they stood if ``store_unfinished`` stored them)."""
        return sum(len(b) for b in self._buffers)

    def _act(self, obs: np.ndarray) -> np.ndarray:
        act = getattr(self.policy, "act", None)
        actions = act(obs) if callable(act) else self.policy(obs)
        actions = np.asarray(actions).astype(np.int64, copy=False).reshape(-1)
        if actions.shape != (self.num_envs,):
            raise UserError(f"the policy returned actions of shape {actions.shape}, expected ({self.num_envs},)")
        return actions

    def _policy_reset(self, mask: np.ndarray) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset) and mask.any():
            reset(mask)

    def flush(self, max_steps: int | None = None) -> int:
        """Store every env's unfinished episode, cut where it stands (``truncated`` on its last transition),
        so that nothing collected is left out of the dataset; the games go on as new episodes.

        ``max_steps`` stores at most that many transitions, cutting the episodes earlier (the last vector
        step may have gone past a target that is not a multiple of the number of envs). Returns the
        transitions stored.
        """
        excess = 0 if max_steps is None else max(0, self.buffered_steps - max(0, max_steps))
        for buf in self._buffers:
            cut = min(excess, len(buf))
            for _ in range(cut):
                buf.pop()
            excess -= cut
        stored = 0
        for i, buf in enumerate(self._buffers):
            if len(buf) > 0:
                buf.truncated[-1] = True
                self._store(i, buf.episode())
                stored += len(buf)
            self._buffers[i], self._stored[i] = _Buffer(self._obs[i]), None  # the game goes on as a new episode
        if stored:
            self._policy_reset(np.ones(self.num_envs, dtype=bool))
        return stored

    def store_unfinished(self) -> int:
        """Store every env's unfinished episode as it stands (neither terminated nor truncated) and go on
        with it: the next store, or its end, replaces it by the longer episode under the same id, as
        DIAMOND's collector stores and extends its current episode. Returns the transitions stored."""
        stored = 0
        for i, buf in enumerate(self._buffers):
            if len(buf) > 0:
                self._store(i, buf.episode())
                stored += len(buf)
        return stored

    def _store(self, i: int, episode: Episode) -> int:
        """Append env ``i``'s episode, or replace the unfinished version of it stored before; its id."""
        stored = self._stored[i]
        if stored is None:
            self._stored[i] = self.dataset.append(episode)
            return self._stored[i]
        later = [self.dataset.episode(j) for j in range(stored + 1, len(self.dataset))]
        self.dataset.truncate(stored)  # the dataset only appends: rewrite from the replaced episode on
        for replacement in (episode, *later):
            self.dataset.append(replacement)
        return stored

    def collect(self, num_steps: int, *, progress: bool | None = None) -> CollectStats:
        """Collect at least ``num_steps`` transitions: ``ceil(num_steps / num_envs)`` steps of every env."""
        if num_steps < 0:
            raise UserError(f"num_steps must be >= 0, got {num_steps}")
        start = time.perf_counter()
        if self._obs is None:
            self._obs, _ = self.env.reset()
            self._buffers = [_Buffer(o) for o in self._obs]
            self._stored = [None] * self.num_envs
            self._policy_reset(np.ones(self.num_envs, dtype=bool))
        vector_steps = math.ceil(num_steps / self.num_envs)
        show = self.progress if progress is None else progress
        bar = None
        if show:
            bar = progress_bar(total=vector_steps * self.num_envs, desc="collect (real game)", unit="step")
        returns: list[float] = []
        for _ in range(vector_steps):
            actions = self._act(self._obs)
            obs, rewards, terminated, truncated, infos = self.env.step(actions)
            ended = np.asarray(terminated | truncated, dtype=bool)
            life_loss = np.array(infos.get("life_loss", np.zeros(self.num_envs, dtype=bool)), dtype=bool)
            final_info = infos.get("final_info", {})
            if ended.any() and "life_loss" in final_info:  # gymnasium's Sync/AsyncVectorEnv keep it there
                life_loss[ended] = np.asarray(final_info["life_loss"], dtype=bool)[ended]
            for i in range(self.num_envs):
                buf = self._buffers[i]
                last = infos["final_obs"][i] if ended[i] else obs[i]
                buf.add(int(actions[i]), float(rewards[i]), bool(terminated[i]), bool(truncated[i]),
                        bool(life_loss[i]), last)
                if ended[i]:
                    episode = buf.episode()
                    self._store(i, episode)
                    returns.append(episode.episode_return)
                    self._buffers[i], self._stored[i] = _Buffer(obs[i]), None
            self._policy_reset(ended)
            self._obs = obs
            if bar is not None:
                if ended.any():
                    bar.set_postfix(episodes=len(returns), mean_return=f"{np.mean(returns):.1f}", refresh=False)
                bar.update(self.num_envs)
        if bar is not None:
            bar.close()
        steps = vector_steps * self.num_envs
        self.total_steps += steps
        seconds = time.perf_counter() - start
        return CollectStats(
            steps=steps,
            episodes_finished=len(returns),
            mean_return=float(np.mean(returns)) if returns else float("nan"),
            seconds=seconds,
            steps_per_second=steps / seconds if seconds > 0 else float("nan"),
            returns=returns,
        )


def read_collection_log(data: str | Path) -> list[dict[str, Any]]:
    """The runs that filled a dataset folder (policy, steps, seed, date), oldest first; [] if unknown."""
    path = Path(data) / COLLECTION_LOG
    if not path.exists():
        return []
    runs = json.loads(path.read_text())
    if not isinstance(runs, list):
        raise UserError(f"{path}: expected a JSON list of collection runs")
    return runs


def _log_collection(data: str | Path, run: dict[str, Any]) -> None:
    write_json_atomic(Path(data) / COLLECTION_LOG, [*read_collection_log(data), run])


@user_errors
def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m training.data.collect --game Pong --out DIR --steps N``.

    The dataset ends with ``N`` transitions: run again after an interruption, the same command collects
    only what is missing (episodes are stored whole and atomically, so none is half-written or
    repeated); ``--append`` collects ``N`` more on purpose. The episodes still running at the end are
    stored cut (``truncated``), so every collected transition counts.
    """
    parser = argparse.ArgumentParser(description="Collect episodes of a real Atari game, or of any Gymnasium "
                                                 "environment with image observations, into a dataset.")
    add_environment_arguments(parser)
    parser.add_argument("--out", required=True, help="dataset folder (created, or completed)")
    parser.add_argument("--steps", type=int, required=True,
                        help="transitions the dataset should hold (re-running the command completes it)")
    parser.add_argument("--append", action="store_true",
                        help="collect --steps more transitions on top of what the dataset already holds")
    parser.add_argument("--num-envs", type=int, default=1, help="games played in parallel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-life-loss", action="store_true",
                        help="Atari: end episodes at game over, not at life losses")
    parser.add_argument("--policy", choices=["random", "follow"], default="random",
                        help=f"random actions, or a scripted ball follower ({', '.join(SCRIPTED_GAMES)})")
    parser.add_argument("--epsilon", type=float, default=0.25,
                        help="with --policy follow: chance of a uniform random action at each step")
    parser.add_argument("--format", choices=FORMATS, default="gym-diamond",
                        help="minari: also write the whole dataset in Minari's format, to OUT/minari (or to "
                             "--minari-id under Minari's datasets folder); the collection itself resumes from OUT")
    parser.add_argument("--minari-id", default=None, help="with --format minari: a Minari dataset id to write")
    args = parser.parse_args(argv)
    if args.steps < 0:
        parser.error(f"--steps must be >= 0, got {args.steps}")
    if not 0 <= args.epsilon <= 1:
        parser.error(f"--epsilon must be in [0, 1], got {args.epsilon}")
    if args.env_id is not None:
        if args.policy != "random":
            parser.error("--policy follow plays Atari games (--game) only")
        check_env_id(args.env_id)  # before any folder is made
        game = args.env_id.split(":", 1)[-1]  # the id without the module that registers it
    else:
        if args.observation != "auto" or args.wrapper or args.env_kwargs:
            parser.error("--observation, --wrapper and --env-kwargs apply to --env-id environments, not Atari games")
        game = game_to_name(args.game)
        if args.policy == "follow" and game not in SCRIPTED_GAMES:
            parser.error(f"--policy follow plays {', '.join(SCRIPTED_GAMES)} only, not {game}")
    with FolderLock(args.out, "collection"):
        _collect_into(args, game)
    if args.format == "minari":
        from training.data.minari_format import to_minari

        target = args.minari_id or Path(args.out) / "minari"
        print(f"Minari dataset: {to_minari(EpisodeDataset(args.out), target)}")


def _collect_into(args: argparse.Namespace, game: str) -> None:
    """The command's work, its dataset folder locked."""
    environment = environment_from_arguments(args) if args.env_id is not None else None
    meanings = environment.action_meanings() if environment is not None else None
    dataset = EpisodeDataset(args.out, game=game, action_meanings=meanings)
    have = dataset.num_steps
    missing = args.steps if args.append else args.steps - have
    if missing <= 0:
        print(f"{args.out} already holds {have} transitions (--steps {args.steps}): nothing to collect; "
              f"--append collects more")
        return
    if have and not args.append:
        print(f"{args.out} holds {have} of {args.steps} transitions: collecting the {missing} missing")
    seed = args.seed + have  # more data plays new games, not the same ones again
    if environment is not None:
        env = environment.collector_env(args.num_envs, seed=seed)
    else:
        env = make_vector_atari(game, args.num_envs, done_on_life_loss=not args.no_life_loss, seed=seed)
    num_actions = env.single_action_space.n
    if args.policy == "follow":
        follower = BallFollower(game, num_actions, epsilon=args.epsilon, seed=seed)
        policy, described = follower, follower.describe()
    else:
        policy, described = RandomAgent(num_actions, seed=seed), {"policy": "random"}
    collector = Collector(env, dataset, policy, progress=True)
    stats = collector.collect(missing)
    collector.flush(max_steps=have + missing - dataset.num_steps)  # exactly --steps, whatever --num-envs
    env.close()
    source = (environment.describe() if environment is not None
              else {"life_loss_ends_episodes": not args.no_life_loss})
    _log_collection(args.out, {**described, "steps": dataset.num_steps - have, "seed": seed, **source,
                               "date": time.strftime("%Y-%m-%d %H:%M:%S")})
    print(f"{stats.steps} steps, {stats.episodes_finished} episodes (mean return {stats.mean_return:.2f}), "
          f"{stats.steps_per_second:.0f} steps/s; dataset: {len(dataset)} episodes, {dataset.num_steps} steps")


if __name__ == "__main__":
    main()
