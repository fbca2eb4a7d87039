"""Playing a policy in a vector env, the dream or the real game, and counting its reward and end events.

``count_events`` plays one policy for a number of agent steps and counts reward events (steps whose
reward has a sign, since the dream's reward model predicts the sign), life losses, terminations and
episodes. ``make_policy`` builds the policies the closed-loop gate plays (``training.fidelity.closed_loop``):
``random`` and, per game, scripted players at several epsilons; ``make_dream_env`` and ``make_real_env``
the two sides, with the same episode ends.

Lives: the real game reports each life lost (``infos["life_loss"]``, from ALE's lives counter). The dream
has no lives counter, only ``terminated``, which its termination model learned from where the collected
episodes ended: at each life loss in this project's and DIAMOND's collection protocol (the game going on).
So in a game with lives (Breakout) each dream termination counts as a life lost, unless the checkpoint's
provenance says its data ended episodes at game over (:func:`dream_ends_at_life_loss`).

Points where the ball is (Pong): a dream's reward model reads the dreamed frames, and it can pay a point the
dreamed ball never scored (seen: blurred score digits read as a new score). ``count_events`` counts the reward
events whose ball was seen across the goal line it scores through (``GameRules.goal_lines``) in one of the 3 frames
before; in the real game that is every point.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch

from gym_diamond.checkpoint import Checkpoint
from gym_diamond.envs.core import DreamCore
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from gym_diamond.errors import UserError
from gym_diamond.games import atari_game_name
from training.data.games import FOLLOWER_POLICIES, rules
from training.data.objects import Objects, count_balls, court_kept, find_objects
from training.data.policies import Agent, RandomAgent

__all__ = [
    "DEFAULT_POLICIES",
    "EventCounts",
    "count_events",
    "default_policies",
    "dream_ends_at_life_loss",
    "game_events",
    "game_has_lives",
    "make_dream_env",
    "make_policy",
    "make_real_env",
    "score_rate",
]

DEFAULT_POLICIES = FOLLOWER_POLICIES  # the closed loop's policies in Pong and Breakout (``training.data.games``)


def game_events(game: str) -> tuple[str, ...]:
    """The event kinds counted and judged for ``game`` (``training.data.games.rules``): Pong, points won and lost;
    Breakout, bricks and lives lost; other games, reward events and lives lost."""
    return rules(game).events


def score_rate(game: str, rates: Mapping[str, float]) -> float:
    """The policy's score per 1,000 steps, by which policies are ranked: Pong, points won minus lost; Breakout,
    bricks; other games, positive minus negative reward events (``training.data.games.rules``)."""
    return rules(game).score(rates)


# ------------------------------------------------------------------------------------------------ counting
@dataclass(frozen=True)
class EventCounts:
    """What one policy did in one environment over ``steps`` agent steps (all environments together)."""

    game: str
    steps: int
    positive_rewards: int  # steps with reward > 0: Pong points won, Breakout bricks
    negative_rewards: int  # steps with reward < 0: Pong points lost
    lives_lost: int
    terminations: int
    episodes: int  # episodes that ended (terminated or truncated)
    # frames handed to the policy that show the ball, where the game has one (training.data.objects): a dream that
    # stops serving after a point shows far fewer than the game
    frames_with_ball: int | None = None
    # reward events with the ball seen across the goal line it scores through in one of the 3 frames before (Pong)
    rewards_at_goal: int | None = None
    # frames handed to the policy that show more than one ball (training.data.objects.count_balls): never in the
    # game; a dream drifting over its own frames draws extra balls, which cross the goal lines and score points
    frames_with_extra_balls: int | None = None
    # reward events of the same sign as the same env's reward on the step before: the game pays a Pong point once and
    # then takes the ball away; a dream that draws the ball past the goal line a frame longer can pay it twice
    rewards_repeated: int = 0
    # the fixed court's share drawn as the game draws it (training.data.objects.court_kept), summed over the frames
    # handed to the policy, where the game has a ball: as many as the frames in the game; a dream's walls shrink
    court_kept: float | None = None

    def events(self) -> dict[str, int]:
        """The game's judged event counts under their names, e.g. ``{"points_won": 3, "points_lost": 20}``."""
        named = {"points_won": self.positive_rewards, "points_lost": self.negative_rewards,
                 "bricks": self.positive_rewards, "positive_rewards": self.positive_rewards,
                 "negative_rewards": self.negative_rewards, "lives_lost": self.lives_lost}
        return {kind: named[kind] for kind in game_events(self.game)}

    def per_1000(self) -> dict[str, float]:
        """The judged events, terminations and ended episodes per 1,000 agent steps."""
        counts = {**self.events(), "terminations": self.terminations, "episodes": self.episodes}
        return {k: 1000.0 * v / self.steps if self.steps else 0.0 for k, v in counts.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the raw counts, the rates per 1,000 steps and, with a ball, the share of frames showing it."""
        shown = {} if self.frames_with_ball is None or not self.steps else \
            {"ball_shown": round(self.frames_with_ball / self.steps, 4)}
        rewards = self.positive_rewards + self.negative_rewards
        if self.rewards_at_goal is not None and rewards:
            shown["rewards_at_goal_share"] = round(self.rewards_at_goal / rewards, 4)
        if rewards:
            shown["repeated_rewards_share"] = round(self.rewards_repeated / rewards, 4)
        if self.frames_with_extra_balls is not None and self.steps:
            shown["extra_balls_share"] = round(self.frames_with_extra_balls / self.steps, 4)
        if self.court_kept is not None and self.steps:
            shown["court_kept_share"] = round(self.court_kept / self.steps, 4)
        return {**asdict(self), "per_1000": {k: round(v, 3) for k, v in self.per_1000().items()}, **shown}


class VectorEnvLike(Protocol):
    """What ``count_events`` needs: gymnasium's vector API with SAME_STEP autoreset."""

    num_envs: int

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]: ...

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]: ...


def _life_losses(infos: dict[str, Any], ended: np.ndarray) -> np.ndarray | None:
    """Where the env says a life was lost this step, or None if it does not say (the dream)."""
    if "life_loss" not in infos:
        return None
    life_loss = np.array(infos["life_loss"], dtype=bool)
    final_info = infos.get("final_info", {})
    if ended.any() and isinstance(final_info, dict) and "life_loss" in final_info:  # gymnasium's Sync/Async
        life_loss[ended] = np.asarray(final_info["life_loss"], dtype=bool)[ended]
    return life_loss


def count_events(env: VectorEnvLike, policy: Agent, steps: int, game: str, *, seed: int | None = None,
                 terminations_are_life_losses: bool = False,
                 progress: Callable[[int], object] | None = None) -> EventCounts:
    """Play ``policy`` for at least ``steps`` agent steps (``ceil(steps / num_envs)`` vector steps) and count.
    ``progress`` is called with the agent steps of each vector step (e.g. a progress bar's ``update``).

    ``env`` is reset first (with ``seed``). Life losses are read from ``infos["life_loss"]`` where the env
    reports them (the real game); an env that does not (the dream) loses a life at each termination when
    ``terminations_are_life_losses``, else never (see :func:`dream_ends_at_life_loss`).
    """
    if steps < 1:
        raise UserError(f"steps must be >= 1, got {steps}")
    n = env.num_envs
    obs, _ = env.reset(seed=seed)
    policy.reset(np.ones(n, dtype=bool))
    vector_steps = math.ceil(steps / n)
    positive = negative = lives = terminations = episodes = repeated = 0
    last_sign = np.zeros(n)  # the sign of each env's reward on the step before (0 after an end)
    game_rules = rules(game)
    ball = 0 if "ball" in game_rules.objects else None
    extra_balls = court = None if ball is None else 0
    goals = None if ball is None or game_rules.goal_lines is None else \
        _GoalWatch(game_rules.goal_lines, find_objects(game, np.asarray(obs)))
    for _ in range(vector_steps):
        actions = np.asarray(policy.act(obs)).astype(np.int64).reshape(-1)
        obs, rewards, terminated, truncated, infos = env.step(actions)
        rewards = np.asarray(rewards)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        ended = terminated | truncated
        if ball is not None:
            objects = find_objects(game, np.asarray(obs))
            ball += int(objects.ball_visible.sum())
            extra_balls += int((count_balls(game, np.asarray(obs), most=2) > 1).sum())
            court += float(court_kept(game, np.asarray(obs)).sum())
            if goals is not None:
                goals.step(rewards, objects, ended)
        sign = np.sign(rewards)
        repeated += int(((sign != 0) & (sign == last_sign)).sum())
        last_sign = np.where(ended, 0, sign)
        positive += int((rewards > 0).sum())
        negative += int((rewards < 0).sum())
        terminations += int(terminated.sum())
        episodes += int(ended.sum())
        life_loss = _life_losses(infos, ended)
        if life_loss is not None:
            lives += int(life_loss.sum())
        elif terminations_are_life_losses:
            lives += int(terminated.sum())
        if ended.any():
            policy.reset(ended)
        if progress is not None:
            progress(n)
    # an Atari game by its usual name; any other environment by its own (its dream's game)
    return EventCounts(atari_game_name(game) or game, vector_steps * n, positive, negative, lives, terminations,
                       episodes, ball, None if goals is None else goals.rewards_at_goal, extra_balls, repeated,
                       court)


class _GoalWatch:
    """The ball's x in the last ``FRAMES`` frames of each env, to tell a point the ball scored from one the
    reward model paid elsewhere (``GameRules.goal_lines``)."""

    FRAMES = 3

    def __init__(self, goal_lines: tuple[float, float], first_objects: Objects) -> None:
        self.won_at, self.lost_at = goal_lines
        self.ball_x = np.full((self.FRAMES, len(first_objects)), np.nan)
        self.rewards_at_goal = 0
        self._push(first_objects)

    def _push(self, objects: Objects) -> None:
        self.ball_x = np.concatenate([self.ball_x[1:], objects.ball_xy[None, :, 0]])  # NaN where unseen

    def step(self, rewards: np.ndarray, objects: Objects, ended: np.ndarray) -> None:
        """Count this step's rewards against the frames before it, then take in its observation."""
        with np.errstate(invalid="ignore"):  # NaN (no ball) compares False
            won = (rewards > 0) & (self.ball_x <= self.won_at).any(axis=0)
            lost = (rewards < 0) & (self.ball_x >= self.lost_at).any(axis=0)
        self.rewards_at_goal += int(won.sum() + lost.sum())
        self.ball_x[:, ended] = np.nan  # the observation after an end is the next episode's first
        self._push(objects)


# ------------------------------------------------------------------------------------------------ policies
def default_policies(game: str) -> tuple[str, ...]:
    """The policies judged for ``game``: random and its scripted player at several epsilons (Boxing: the
    chaser; Pong, Breakout: the ball follower); random alone for other games (``training.data.games.rules``)."""
    return rules(game).policies


def make_policy(name: str, game: str, num_actions: int, seed: int | None = None) -> Agent:
    """A batched policy by name: ``random``, ``follower`` (the ball follower, epsilon 0) or ``follower-eps<E>``
    (a uniform random action with probability E), the follower for Pong and Breakout only; ``chaser`` or
    ``chaser-eps<E>`` for Boxing (``training.data.scripted.BoxingChaser``)."""
    if name == "random":
        return RandomAgent(num_actions, seed=seed)
    return rules(game).make_policy(name, num_actions, seed)


# ---------------------------------------------------------------------------------------------- the games
@functools.cache
def game_has_lives(game: str) -> bool:
    """Whether the real game counts lives (ALE reports lives > 0 at the start): Breakout yes, Pong no."""
    from gym_diamond.atari import make_atari_env

    env = make_atari_env(game, noop_max=0)
    try:
        env.reset(seed=0)
        return env.ale.lives() > 0
    finally:
        env.close()


def dream_ends_at_life_loss(provenance: Mapping[str, Any]) -> bool:
    """Whether the dream's ``terminated`` means a life lost (True) or game over (False), from a checkpoint's
    provenance.

    The termination model learns where the collected episodes ended. This project's collection
    (``training.data.collect``, the pipeline) and DIAMOND's end an episode at each life loss, the game going
    on (``done_on_life_loss``); a collection run logged with ``life_loss_ends_episodes: false``
    (``--no-life-loss``) ended them at game over. Unknown provenance (e.g. DIAMOND's own models) follows
    DIAMOND's protocol: life loss. In a game without lives (Pong) an episode ends at game over either way.
    """
    runs = provenance.get("data_collection") or []
    return not any(isinstance(run, dict) and run.get("life_loss_ends_episodes") is False for run in runs)


class _CoreVectorEnv:
    """A loaded checkpoint's dream as the vector API ``count_events`` needs (numpy out, SAME_STEP autoreset, the
    frame an episode ended on in ``infos["final_obs"]`` as gymnasium 1.x puts it)."""

    def __init__(self, checkpoint: Checkpoint, num_envs: int, max_episode_steps: int | None,
                 rew_end_window: int | None = DEFAULT_WINDOW) -> None:
        self.num_envs = num_envs
        self.core = DreamCore(checkpoint.world_model, checkpoint.start_bank, num_envs=num_envs,
                              max_episode_steps=max_episode_steps, rew_end_window=rew_end_window)

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        return self.core.reset(seed=seed).cpu().numpy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.core.step(actions)
        terminated, truncated = out.terminated.cpu().numpy(), out.truncated.cpu().numpy()
        return (out.obs.cpu().numpy(), out.reward.cpu().numpy(), terminated, truncated,
                {"final_obs": out.final_obs.cpu().numpy(), "_final_obs": terminated | truncated})

    def close(self) -> None:
        self.core.close()


def make_dream_env(checkpoint: str | os.PathLike | Checkpoint, num_envs: int, *, denoising_steps: int | None = None,
                   sampler_start: str | None = None, device: torch.device | str = "cpu",
                   max_episode_steps: int | None = None, rew_end_window: int | None = DEFAULT_WINDOW
                   ) -> VectorEnvLike:
    """``num_envs`` dreams stepped in one batched pass, each starting from the checkpoint's start bank.

    A path opens ``DreamVectorEnv`` (what ``gym.make_vec("DiamondDream/<Game>-v0", ...)`` builds) on
    ``device``; a loaded :class:`~gym_diamond.checkpoint.Checkpoint` dreams on its model's device as it is
    (set ``denoising_steps`` and ``sampler_start`` on it with ``model.config.with_denoising_steps`` and
    ``with_sampler_start`` beforehand). No time limit by
    default (``max_episode_steps=None``), as the real game has none short of ALE's own: a dream that never
    ends is what the measure should see. ``rew_end_window``: how the dream reads its reward/termination LSTM over a
    long episode (``gym_diamond.envs.rew_end_reading``).
    """
    if isinstance(checkpoint, Checkpoint):
        if denoising_steps is not None or sampler_start is not None:
            raise UserError("denoising_steps and sampler_start apply to a checkpoint path; for a loaded Checkpoint "
                            "set world_model.config = world_model.config.with_denoising_steps(n) (or "
                            ".with_sampler_start(start))")
        return _CoreVectorEnv(checkpoint, num_envs, max_episode_steps, rew_end_window)
    from gym_diamond.envs.vector import DreamVectorEnv

    return DreamVectorEnv(num_envs, checkpoint=checkpoint, device=device, denoising_steps=denoising_steps,
                          sampler_start=sampler_start, max_episode_steps=max_episode_steps,
                          rew_end_window=rew_end_window)


def make_real_env(game: str, num_envs: int, *, done_on_life_loss: bool = True, seed: int | None = None
                  ) -> VectorEnvLike:
    """``num_envs`` real games with the dream's observation protocol (64x64 RGB, 4-frame repeat, max-pool, no-op
    starts): ``training.data.vector_atari.make_vector_atari``, pixel-identical to ``gym_diamond.atari.AtariEnv``. It
    reports ``infos["life_loss"]``; ``done_on_life_loss`` ends episodes as the dream's training data did."""
    from training.data.vector_atari import make_vector_atari

    return make_vector_atari(game, num_envs, done_on_life_loss=done_on_life_loss, seed=seed)


