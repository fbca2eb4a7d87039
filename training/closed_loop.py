"""Closed-loop event counts: policies playing the dream on its own frames, against the same policies in the real game.

A world model can predict the next frame well from real frames (open loop, ``training.open_loop``) and
still never score once it plays on its own frames: the dreamed ball fades or never reaches a paddle, so
the reward model has nothing to reward. DIAMOND (Alonso et al., NeurIPS 2024) judges a world model by
the agent it trains, which needs the dream to hand out rewards and life losses about as often as the
game does, for the policies that will play it. This module measures that directly:

- ``count_events`` plays one policy for a number of agent steps in a vector env (the dream or the real
  game) and counts reward events, life losses, terminations and episodes.
- ``closed_loop_report`` does so for several policies (``random`` and the scripted ball follower,
  ``training.scripted.BallFollower``, at several epsilons) in the dream and in the real game, and
  ``judge_closed_loop`` decides: every counted event's rate in the dream within ``TOLERANCE`` (30%)
  of the real game's (or within what chance allows at the budget played), and the policies ranked by score
  as the real game ranks them.

The follower acts on the frames it is given, so in the dream it follows the dreamed ball.

Counted events: Pong, points won (reward > 0) and points lost (reward < 0); Breakout, bricks (reward > 0
steps) and lives lost; other games, positive and negative reward steps and lives lost. Rewards are
counted as events (steps whose reward has that sign), since the dream's reward model predicts the sign.

Lives: the real game reports each life lost (``infos["life_loss"]``, from ALE's lives counter). The dream
has no lives counter, only ``terminated``, which its termination model learned from where the collected
episodes ended: at each life loss in this project's and DIAMOND's collection protocol (the game going on).
So in a game with lives (Breakout) each dream termination counts as a life lost, unless the checkpoint's
provenance says its data ended episodes at game over (:func:`dream_ends_at_life_loss`); in Pong (no
lives) a termination is a game over and no life is counted on either side. The real game ends its
episodes the same way as the data did, so terminations per 1,000 steps compare as well (reported).
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from gym_diamond.atari import game_to_name
from gym_diamond.checkpoint import Checkpoint
from gym_diamond.envs.core import DreamCore
from training.agents import Agent, RandomAgent
from training.boxing import BoxingChaser
from training.scripted import SCRIPTED_GAMES, BallFollower

__all__ = [
    "BOXING_POLICIES",
    "DEFAULT_POLICIES",
    "GAME_EVENTS",
    "RATE_FLOOR",
    "TOLERANCE",
    "ClosedLoopVerdict",
    "EventCounts",
    "closed_loop_report",
    "count_events",
    "default_policies",
    "dream_ends_at_life_loss",
    "game_events",
    "game_has_lives",
    "judge_closed_loop",
    "make_dream_env",
    "make_policy",
    "make_real_env",
    "score_rate",
]

TOLERANCE = 0.3
"""A dream's event rate may differ from the real game's by this share of the real rate."""
RATE_FLOOR = 1.0
"""Events per 1,000 steps below which a real rate counts as this much in the tolerance: a real rate of 0 allows
the dream up to 0.3 events per 1,000 steps instead of demanding exactly none (and likewise for ranking)."""
CHANCE_ERRORS = 3.0  # standard errors of chance a rate may differ by, beyond the 30%, at small budgets (Pong's
# points come in streaks: two seeds of the same real player parted by 2.3 Poisson standard errors)
DEFAULT_POLICIES = ("random", "follower", "follower-eps0.25", "follower-eps0.5")
BOXING_POLICIES = ("random", "chaser", "chaser-eps0.5")

GAME_EVENTS: dict[str, tuple[str, ...]] = {
    "Pong": ("points_won", "points_lost"),
    "Breakout": ("bricks", "lives_lost"),
}
"""The event kinds judged per game; other games: ``OTHER_EVENTS``."""
OTHER_EVENTS = ("positive_rewards", "negative_rewards", "lives_lost")


def game_events(game: str) -> tuple[str, ...]:
    """The event kinds counted and judged for ``game``."""
    return GAME_EVENTS.get(game_to_name(game), OTHER_EVENTS)


def score_rate(game: str, rates: Mapping[str, float]) -> float:
    """The policy's score per 1,000 steps, by which policies are ranked: Pong, points won minus lost; Breakout,
    bricks; other games, positive minus negative reward events."""
    name = game_to_name(game)
    if name == "Pong":
        return rates["points_won"] - rates["points_lost"]
    if name == "Breakout":
        return rates["bricks"]
    return rates["positive_rewards"] - rates["negative_rewards"]


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
        """JSON-ready: the raw counts and the rates per 1,000 steps."""
        return {**asdict(self), "per_1000": {k: round(v, 3) for k, v in self.per_1000().items()}}


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
                 terminations_are_life_losses: bool = False) -> EventCounts:
    """Play ``policy`` for at least ``steps`` agent steps (``ceil(steps / num_envs)`` vector steps) and count.

    ``env`` is reset first (with ``seed``). Life losses are read from ``infos["life_loss"]`` where the env
    reports them (the real game); an env that does not (the dream) loses a life at each termination when
    ``terminations_are_life_losses``, else never (see :func:`dream_ends_at_life_loss`).
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    n = env.num_envs
    obs, _ = env.reset(seed=seed)
    policy.reset(np.ones(n, dtype=bool))
    vector_steps = math.ceil(steps / n)
    positive = negative = lives = terminations = episodes = 0
    for _ in range(vector_steps):
        actions = np.asarray(policy.act(obs)).astype(np.int64).reshape(-1)
        obs, rewards, terminated, truncated, infos = env.step(actions)
        rewards = np.asarray(rewards)
        terminated, truncated = np.asarray(terminated, dtype=bool), np.asarray(truncated, dtype=bool)
        ended = terminated | truncated
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
    return EventCounts(game_to_name(game), vector_steps * n, positive, negative, lives, terminations, episodes)


# ------------------------------------------------------------------------------------------------ policies
def default_policies(game: str) -> tuple[str, ...]:
    """The policies judged for ``game``: random and its scripted player at several epsilons (Boxing: the
    chaser, ``training.boxing``; Pong, Breakout: the ball follower); random alone for other games."""
    name = game_to_name(game)
    if name == "Boxing":
        return BOXING_POLICIES
    return DEFAULT_POLICIES if name in SCRIPTED_GAMES else ("random",)


def make_policy(name: str, game: str, num_actions: int, seed: int | None = None) -> Agent:
    """A batched policy by name: ``random``, ``follower`` (the ball follower, epsilon 0) or ``follower-eps<E>``
    (a uniform random action with probability E), the follower for Pong and Breakout only; ``chaser`` or
    ``chaser-eps<E>`` for Boxing (``training.boxing.BoxingChaser``)."""
    if name == "random":
        return RandomAgent(num_actions, seed=seed)
    if name == "chaser" or name.startswith("chaser-eps"):
        if game_to_name(game) != "Boxing":
            raise ValueError(f"policy {name!r} plays Boxing only, not {game}")
        return BoxingChaser(num_actions, epsilon=0.0 if name == "chaser" else float(name.removeprefix("chaser-eps")),
                            seed=seed)
    if name == "follower" or name.startswith("follower-eps"):
        epsilon = 0.0 if name == "follower" else float(name.removeprefix("follower-eps"))
        if game_to_name(game) not in SCRIPTED_GAMES:
            raise ValueError(f"policy {name!r} plays {', '.join(SCRIPTED_GAMES)} only, not {game}")
        return BallFollower(game, num_actions, epsilon=epsilon, seed=seed)
    raise ValueError(f"unknown policy {name!r}: 'random', 'follower' or 'follower-eps<epsilon>', e.g. "
                     f"{', '.join(DEFAULT_POLICIES)}")


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
    (``training.collect``, the pipeline) and DIAMOND's end an episode at each life loss, the game going
    on (``done_on_life_loss``); a collection run logged with ``life_loss_ends_episodes: false``
    (``--no-life-loss``) ended them at game over. Unknown provenance (e.g. DIAMOND's own models) follows
    DIAMOND's protocol: life loss. In a game without lives (Pong) an episode ends at game over either way.
    """
    runs = provenance.get("data_collection") or []
    return not any(isinstance(run, dict) and run.get("life_loss_ends_episodes") is False for run in runs)


class _CoreVectorEnv:
    """A loaded checkpoint's dream as the vector API ``count_events`` needs (numpy out, SAME_STEP autoreset)."""

    def __init__(self, checkpoint: Checkpoint, num_envs: int, max_episode_steps: int | None) -> None:
        self.num_envs = num_envs
        self.core = DreamCore(checkpoint.world_model, checkpoint.start_bank, num_envs=num_envs,
                              max_episode_steps=max_episode_steps)

    def reset(self, *, seed: int | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        return self.core.reset(seed=seed).cpu().numpy(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        out = self.core.step(actions)
        return (out.obs.cpu().numpy(), out.reward.cpu().numpy(), out.terminated.cpu().numpy(),
                out.truncated.cpu().numpy(), {})

    def close(self) -> None:
        self.core.close()


def make_dream_env(checkpoint: str | os.PathLike | Checkpoint, num_envs: int, *, denoising_steps: int | None = None,
                   device: torch.device | str = "cpu", max_episode_steps: int | None = None) -> VectorEnvLike:
    """``num_envs`` dreams stepped in one batched pass, each starting from the checkpoint's start bank.

    A path opens ``DreamVectorEnv`` (what ``gym.make_vec("DiamondDream/<Game>-v0", ...)`` builds) on
    ``device``; a loaded :class:`~gym_diamond.checkpoint.Checkpoint` dreams on its model's device as it is
    (set ``denoising_steps`` on it with ``model.config.with_denoising_steps`` beforehand). No time limit by
    default (``max_episode_steps=None``), as the real game has none short of ALE's own: a dream that never
    ends is what the measure should see.
    """
    if isinstance(checkpoint, Checkpoint):
        if denoising_steps is not None:
            raise ValueError("denoising_steps applies to a checkpoint path; for a loaded Checkpoint set "
                             "world_model.config = world_model.config.with_denoising_steps(n)")
        return _CoreVectorEnv(checkpoint, num_envs, max_episode_steps)
    from gym_diamond.envs.vector import DreamVectorEnv

    return DreamVectorEnv(num_envs, checkpoint=checkpoint, device=device, denoising_steps=denoising_steps,
                          max_episode_steps=max_episode_steps)


def make_real_env(game: str, num_envs: int, *, done_on_life_loss: bool = True, seed: int | None = None
                  ) -> VectorEnvLike:
    """``num_envs`` real games with the dream's observation protocol (64x64 RGB, 4-frame repeat, max-pool, no-op
    starts): ``training.atari.make_vector_atari``, pixel-identical to ``gym_diamond.atari.AtariEnv``. It reports
    ``infos["life_loss"]``; ``done_on_life_loss`` ends episodes as the dream's training data did."""
    from training.atari import make_vector_atari

    return make_vector_atari(game, num_envs, done_on_life_loss=done_on_life_loss, seed=seed)


# ---------------------------------------------------------------------------------------------- judgement
@dataclass
class ClosedLoopVerdict:
    """Whether the dream's closed-loop event rates match the real game's; ``failures`` says where not."""

    passed: bool
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "failures": self.failures}


def _allowed(*real: float, chance: float = 0.0) -> float:
    """The tolerance around real rates: ``TOLERANCE`` of the largest magnitude, at least of ``RATE_FLOOR``, and at
    least ``chance``."""
    return max(TOLERANCE * max(*(abs(r) for r in real), RATE_FLOOR), chance)


def _chance(steps: int | None, *rates: float) -> float:
    """Two standard errors of the difference of Poisson counts behind ``rates`` (per 1,000 of ``steps``), in
    rate units: how far two plays of the same game can part by chance alone (0 when ``steps`` is None)."""
    if not steps:
        return 0.0
    return CHANCE_ERRORS * math.sqrt(sum(abs(r) for r in rates) * 1000 / steps)


def judge_closed_loop(dream_rates: Mapping[str, Mapping[str, float]], real_rates: Mapping[str, Mapping[str, float]],
                      game: str, steps: int | None = None) -> ClosedLoopVerdict:
    """Judge per-policy rates per 1,000 steps (``{policy: {event: rate}}``, e.g. ``EventCounts.per_1000()``).

    Fails (1) any policy and judged event (:func:`game_events`) whose dream rate ``d`` is off the real
    rate ``r`` by more than ``TOLERANCE * max(r, RATE_FLOOR)``, and (2) any pair of policies whose real
    scores (:func:`score_rate`) differ by more than ``TOLERANCE * max(|a|, |b|, RATE_FLOOR)`` and which the
    dream does not order the same way (a tie in the dream fails too: it cannot tell them apart). A policy
    the real game played but the dream did not is a failure.
    """
    events = game_events(game)
    failures: list[dict[str, Any]] = []
    for policy, real in real_rates.items():
        dream = dream_rates.get(policy)
        if dream is None:
            failures.append({"check": "missing", "policy": policy, "reason": f"{policy}: not played in the dream"})
            continue
        for event in events:
            d, r = float(dream[event]), float(real[event])
            allowed = _allowed(r, chance=_chance(steps, d, r))
            if abs(d - r) > allowed:
                failures.append({"check": "rate", "policy": policy, "event": event, "dream": round(d, 3),
                                 "real": round(r, 3), "allowed_difference": round(allowed, 3),
                                 "reason": f"{policy}: {event} {d:.2f} per 1,000 steps in the dream, "
                                           f"{r:.2f} in the real game (allowed difference {allowed:.2f})"})
    policies = [p for p in real_rates if p in dream_rates]
    real_score = {p: score_rate(game, real_rates[p]) for p in policies}
    dream_score = {p: score_rate(game, dream_rates[p]) for p in policies}
    for i, a in enumerate(policies):
        for b in policies[i + 1:]:
            high, low = (a, b) if real_score[a] > real_score[b] else (b, a)
            noise = _chance(steps, *(real_rates[p][e] for p in (a, b) for e in events))
            if real_score[high] - real_score[low] <= _allowed(real_score[a], real_score[b], chance=noise):
                continue  # the real game does not tell them apart
            if not dream_score[high] > dream_score[low]:
                failures.append({"check": "ranking", "policies": [high, low],
                                 "real_score": [round(real_score[high], 3), round(real_score[low], 3)],
                                 "dream_score": [round(dream_score[high], 3), round(dream_score[low], 3)],
                                 "reason": f"the real game scores {high} above {low} ({real_score[high]:.2f} > "
                                           f"{real_score[low]:.2f} per 1,000 steps), the dream does not "
                                           f"({dream_score[high]:.2f} vs {dream_score[low]:.2f})"})
    return ClosedLoopVerdict(not failures, failures)


# ------------------------------------------------------------------------------------------------- report
def closed_loop_report(checkpoint: str | os.PathLike | Checkpoint, game: str, *, steps: int, num_envs: int,
                       seed: int = 0, policies: Sequence[str] | None = None, denoising_steps: int | None = None,
                       device: torch.device | str = "cpu", max_episode_steps: int | None = None) -> dict[str, Any]:
    """Each policy plays ``steps`` agent steps in the dream and in the real game; their event rates per 1,000
    steps side by side and the verdict of :func:`judge_closed_loop` (JSON-ready).

    ``policies`` default to :func:`default_policies` of the game. ``denoising_steps`` overrides the sampler's
    steps (None: the checkpoint's own). Each policy plays both
    sides with the same seed. The real game ends episodes as the dream's training data did
    (:func:`dream_ends_at_life_loss`), so their terminations compare too (reported, not judged).
    """
    from gym_diamond.checkpoint import read_metadata

    name = game_to_name(game)
    if isinstance(checkpoint, Checkpoint):
        ckpt_game, num_actions, provenance = checkpoint.game, checkpoint.config.num_actions, checkpoint.provenance
    else:
        meta = read_metadata(checkpoint)
        ckpt_game, num_actions, provenance = meta["game"], len(meta["action_meanings"]), meta.get("provenance", {})
    if game_to_name(ckpt_game) != name:
        raise ValueError(f"the checkpoint is a world model of {ckpt_game}, not {name}")
    life_loss_ends = dream_ends_at_life_loss(provenance)
    terminations_are_life_losses = life_loss_ends and game_has_lives(name)
    policies = list(default_policies(name) if policies is None else policies)
    for policy_name in policies:  # fail on a bad name before playing anything
        make_policy(policy_name, name, num_actions)
    if len(set(policies)) != len(policies):
        raise ValueError(f"policies must be distinct, got {policies}")

    dream_env = make_dream_env(checkpoint, num_envs, denoising_steps=denoising_steps, device=device,
                               max_episode_steps=max_episode_steps)
    sampler_steps = dream_env.core.model.config.sampler.num_steps  # DreamVectorEnv and _CoreVectorEnv alike
    real_env = make_real_env(name, num_envs, done_on_life_loss=life_loss_ends, seed=seed)
    results: dict[str, dict[str, Any]] = {}
    dream_rates: dict[str, dict[str, float]] = {}
    real_rates: dict[str, dict[str, float]] = {}
    seconds = {"dream": 0.0, "real": 0.0}
    try:
        for k, policy_name in enumerate(policies):
            policy_seed = seed + 1000 * k
            start = time.perf_counter()
            dream = count_events(dream_env, make_policy(policy_name, name, num_actions, policy_seed), steps, name,
                                 seed=policy_seed, terminations_are_life_losses=terminations_are_life_losses)
            seconds["dream"] += time.perf_counter() - start
            start = time.perf_counter()
            real = count_events(real_env, make_policy(policy_name, name, num_actions, policy_seed), steps, name,
                                seed=policy_seed)
            seconds["real"] += time.perf_counter() - start
            results[policy_name] = {"dream": dream.to_dict(), "real": real.to_dict()}
            steps_played = min(dream.steps, real.steps)
            dream_rates[policy_name], real_rates[policy_name] = dream.per_1000(), real.per_1000()
    finally:
        dream_env.close()
        real_env.close()
    verdict = judge_closed_loop(dream_rates, real_rates, name, steps=steps_played)
    return {
        "game": name,
        "checkpoint": None if isinstance(checkpoint, Checkpoint) else str(checkpoint),
        "steps_per_policy": next(iter(results.values()))["dream"]["steps"] if results else 0,
        "num_envs": num_envs,
        "seed": seed,
        "denoising_steps": int(sampler_steps),
        "max_episode_steps": max_episode_steps,
        "events": list(game_events(name)),
        "tolerance": TOLERANCE,
        "rate_floor_per_1000": RATE_FLOOR,
        "chance_standard_errors": CHANCE_ERRORS,
        "dream_terminations_are_life_losses": terminations_are_life_losses,
        "policies": results,
        "passed": verdict.passed,
        "failures": verdict.failures,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }
