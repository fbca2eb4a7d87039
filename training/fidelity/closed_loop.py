"""Closed-loop event counts: policies playing the dream on its own frames, against the same policies in the real game.

A world model can predict the next frame well from real frames (open loop, ``training.fidelity.open_loop``) and
still never score once it plays on its own frames: the dreamed ball fades or never reaches a paddle, so
the reward model has nothing to reward. DIAMOND (Alonso et al., NeurIPS 2024) judges a world model by
the agent it trains, which needs the dream to hand out rewards and life losses about as often as the
game does, for the policies that will play it. This module measures that directly:

- ``training.agents.rollouts.count_events`` plays one policy for a number of agent steps in a vector env (the
  dream or the real game) and counts reward events, life losses, terminations and episodes.
- ``closed_loop_report`` does so for several policies (``random`` and the game's scripted players,
  ``training.data.scripted``, at several epsilons) in the dream and in the real game, and
  ``judge_closed_loop`` decides: every counted event's rate in the dream within ``TOLERANCE`` (30%)
  of the real game's (or within what chance allows at the budget played), and the policies ranked by score
  as the real game ranks them.

The follower acts on the frames it is given, so in the dream it follows the dreamed ball.

Counted events: Pong, points won (reward > 0) and points lost (reward < 0); Breakout, bricks (reward > 0
steps) and lives lost; other games, positive and negative reward steps and lives lost. Rewards are
counted as events (steps whose reward has that sign), since the dream's reward model predicts the sign.

Lives (``training.agents.rollouts``): in a game with lives (Breakout) each dream termination counts as a life
lost, unless the checkpoint's provenance says its data ended episodes at game over; in Pong (no lives) a
termination is a game over and no life is counted on either side. The real game ends its episodes the same
way as the data did, so terminations per 1,000 steps compare as well (reported).

Where the game has a ball (Pong, Breakout), each side also reports ``ball_shown``, the share of the frames the
policy saw that show it (reported, not judged): a dream that stops serving after a point shows far fewer. In Pong each
side also reports ``rewards_at_goal_share``, the share of the points paid with the ball seen across the goal line it
scores through in one of the 3 frames before (reported, not judged): 1.0 in the real game; below, the dream's reward
model pays points the dreamed ball never scored. With a ball, ``extra_balls_share`` is the share of the frames that show
more than one (``training.data.objects.count_balls``; reported, not judged): 0 in the game; a dream that drifts over
its own frames draws extra balls, and their crossings score. With a ball, ``court_kept_share`` is the mean share of the
game's fixed court (its walls) the frames draw as the game does (``training.data.objects.court_kept``; reported, not
judged): 1.0 in the game; over hundreds of its own frames a dream lets its walls shrink. Every side with rewards reports
``repeated_rewards_share``, the share of its reward events paid again on the same env's next step (reported, not
judged): 0 in real Pong, which pays a point once and takes the ball away; a dream that draws the ball past the goal
line a frame longer can pay the point twice.
"""

from __future__ import annotations

import math
import os
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gym_diamond.atari import game_to_name
from gym_diamond.checkpoint import Checkpoint
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from gym_diamond.errors import UserError
from training.agents.rollouts import (
    count_events,
    default_policies,
    dream_ends_at_life_loss,
    game_events,
    game_has_lives,
    make_dream_env,
    make_policy,
    make_real_env,
    score_rate,
)
from training.runtime.progress import progress_bar

__all__ = ["RATE_FLOOR", "TOLERANCE", "ClosedLoopVerdict", "closed_loop_report", "judge_closed_loop", "policy_seed"]

TOLERANCE = 0.3
"""A dream's event rate may differ from the real game's by this share of the real rate."""
RATE_FLOOR = 1.0
"""Events per 1,000 steps below which a real rate counts as this much in the tolerance: a real rate of 0 allows
the dream up to 0.3 events per 1,000 steps instead of demanding exactly none (and likewise for ranking)."""
CHANCE_ERRORS = 3.0  # standard errors of chance a rate may differ by, beyond the 30%, at small budgets (Pong's
# points come in streaks: two seeds of the same real player parted by 2.3 Poisson standard errors)

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
def policy_seed(seed: int, policy: str, game: str) -> int:
    """The seed ``policy`` plays with, in the dream and in the game, from its name alone: judging some of the
    policies plays each on the seed the full gate gives it, so their figures compare.

    A policy of the game's :func:`default_policies` keeps the seed of its place among them (``seed + 1000 * k``, the
    seeds the gate has always used); any other name gets a place past them from a digest of the name (stable across
    runs and machines, unlike Python's ``hash``).
    """
    judged = default_policies(game)
    place = judged.index(policy) if policy in judged else len(judged) + zlib.crc32(policy.encode()) % 1000
    return seed + 1000 * place


def closed_loop_report(checkpoint: str | os.PathLike | Checkpoint, game: str, *, steps: int, num_envs: int,
                       seed: int = 0, policies: Sequence[str] | None = None, denoising_steps: int | None = None,
                       sampler_start: str | None = None, device: torch.device | str = "cpu",
                       max_episode_steps: int | None = None, progress: bool = False,
                       rew_end_window: int | None = DEFAULT_WINDOW) -> dict[str, Any]:
    """Each policy plays ``steps`` agent steps in the dream and in the real game; their event rates per 1,000
    steps side by side and the verdict of :func:`judge_closed_loop` (JSON-ready).

    ``policies`` default to :func:`default_policies` of the game. ``denoising_steps`` and ``sampler_start``
    override the sampler's steps and start (None: the checkpoint's own). Each policy plays both
    sides with the same seed, from its name (:func:`policy_seed`: a subset of the policies plays the full gate's
    seeds). The real game ends episodes as the dream's training data did
    (:func:`dream_ends_at_life_loss`), so their terminations compare too (reported, not judged). ``progress``
    shows the agent steps played, dream and real, on a bar (a plain line now and then off a terminal).
    ``rew_end_window``: how the dream reads its reward/termination LSTM over a long episode (the dreams' default,
    ``gym_diamond.envs.rew_end_reading``).
    """
    from gym_diamond.checkpoint import read_metadata

    name = game_to_name(game)
    if isinstance(checkpoint, Checkpoint):
        ckpt_game, num_actions, provenance = checkpoint.game, checkpoint.config.num_actions, checkpoint.provenance
    else:
        meta = read_metadata(checkpoint)
        ckpt_game, num_actions, provenance = meta["game"], len(meta["action_meanings"]), meta.get("provenance", {})
    if game_to_name(ckpt_game) != name:
        raise UserError(f"the checkpoint is a world model of {ckpt_game}, not {name}")
    life_loss_ends = dream_ends_at_life_loss(provenance)
    terminations_are_life_losses = life_loss_ends and game_has_lives(name)
    policies = list(default_policies(name) if policies is None else policies)
    for policy_name in policies:  # fail on a bad name before playing anything
        make_policy(policy_name, name, num_actions)
    if len(set(policies)) != len(policies):
        raise UserError(f"policies must be distinct, got {policies}")

    dream_env = make_dream_env(checkpoint, num_envs, denoising_steps=denoising_steps, sampler_start=sampler_start,
                               device=device, max_episode_steps=max_episode_steps, rew_end_window=rew_end_window)
    sampler = dream_env.core.model.config.sampler  # DreamVectorEnv and _CoreVectorEnv alike
    real_env = make_real_env(name, num_envs, done_on_life_loss=life_loss_ends, seed=seed)
    results: dict[str, dict[str, Any]] = {}
    dream_rates: dict[str, dict[str, float]] = {}
    real_rates: dict[str, dict[str, float]] = {}
    seconds = {"dream": 0.0, "real": 0.0}
    bar = progress_bar(total=2 * len(policies) * math.ceil(steps / num_envs) * num_envs, unit="step",
                       desc=f"closed loop {name}", disable=not progress)
    try:
        for policy_name in policies:
            played_seed = policy_seed(seed, policy_name, name)
            start = time.perf_counter()
            bar.set_description(f"closed loop {name}: {policy_name} in the dream", refresh=False)
            dream = count_events(dream_env, make_policy(policy_name, name, num_actions, played_seed), steps, name,
                                 seed=played_seed, terminations_are_life_losses=terminations_are_life_losses,
                                 progress=bar.update)
            seconds["dream"] += time.perf_counter() - start
            start = time.perf_counter()
            bar.set_description(f"closed loop {name}: {policy_name} in the game", refresh=False)
            real = count_events(real_env, make_policy(policy_name, name, num_actions, played_seed), steps, name,
                                seed=played_seed, progress=bar.update)
            seconds["real"] += time.perf_counter() - start
            results[policy_name] = {"dream": dream.to_dict(), "real": real.to_dict()}
            steps_played = min(dream.steps, real.steps)
            dream_rates[policy_name], real_rates[policy_name] = dream.per_1000(), real.per_1000()
    finally:
        bar.close()
        dream_env.close()
        real_env.close()
    verdict = judge_closed_loop(dream_rates, real_rates, name, steps=steps_played)
    return {
        "game": name,
        "checkpoint": None if isinstance(checkpoint, Checkpoint) else str(checkpoint),
        "steps_per_policy": next(iter(results.values()))["dream"]["steps"] if results else 0,
        "num_envs": num_envs,
        "seed": seed,
        "denoising_steps": int(sampler.num_steps),
        "sampler_start": sampler.start,  # unit noise (DIAMOND's) or noise scaled to sigma_max
        "max_episode_steps": max_episode_steps,
        "rew_end_window": rew_end_window,  # None: one reward/termination state carried over each episode
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
