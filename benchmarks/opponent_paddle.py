"""Does a Pong dream keep one opponent paddle that follows the ball, over its own frames?

Pong's opponent (the orange paddle on the left) is the game's: no action moves it, it follows the ball. A dream
must draw it from its own past frames alone, and one that hesitates draws it in two or three pieces, or lags
behind the ball; the ball then gets by and the dream pays points the game would not (the closed-loop gate's
"points won"). A policy (``--policy``, the follower by default) plays ``--steps`` agent steps in the game and in
each checkpoint's dream, with the checkpoint's sampler; per frame, ``training.data.objects.find_opponent_paddle``
reads the paddle. The figures:

- ``seen``: the share of frames that show at least 3 of its rows (the game: about 0.93, the rest half under a bar);
- ``in_pieces``: of those, the share that show it in two or more separate pieces (the game: under 0.01);
- ``approaches``: frames where the ball comes towards it within 12 columns of the left edge, and there
  ``distance_median`` (rows from the ball to the paddle's centre) and ``distance_over_4`` (the share beyond 4 rows,
  where the paddle's 5 rows would miss it);
- ``by_age``: the same, by steps since the episode's start (1-25, 26-50, 51-100, 101-200, 201-400, 401-): from
  real frames a dream's paddle follows the ball as the game's does, and over its own frames it stops.

    python benchmarks/opponent_paddle.py --checkpoint CKPT [CKPT ...] [--steps 2000] [--num-envs 8]

prints one JSON line for the game, then one per checkpoint.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from gym_diamond.checkpoint import read_metadata
from gym_diamond.errors import UserError
from training.agents.rollouts import make_dream_env, make_policy, make_real_env
from training.data.objects import find_objects, find_opponent_paddle

SEEN_ROWS = 3  # a paddle is seen from this many rows (a whole one shows about 5)
NEAR_LEFT = 12  # columns from the left edge within which the ball approaches the opponent's paddle
MISSING_DISTANCE = 4  # rows from the ball to the paddle's centre beyond which its 5 rows miss the ball
AGES = (0, 25, 50, 100, 200, 400, np.inf)  # steps since the episode's start: the bounds of ``by_age``


def opponent_figures(env: Any, policy_name: str, steps: int, num_envs: int, num_actions: int = 6,
                     seed: int = 0) -> dict[str, Any]:
    """``policy_name`` plays ``steps`` agent steps (rounded up to whole vector steps) in ``env`` (Pong, the game
    or a dream); the opponent paddle's figures over the frames it sees (see the module's docstring), overall and
    by the episode's age (steps since its start: a dream drifts further from the game the longer it goes on)."""
    policy = make_policy(policy_name, "Pong", num_actions, seed)
    obs, _ = env.reset(seed=seed)
    policy.reset(np.ones(num_envs, dtype=bool))
    shown_at, pieces_at, approach_at, distances = [], [], [], []  # ages of the frames, of the approaches
    frames_read = 0
    previous_x = np.full(num_envs, np.nan)
    age = np.zeros(num_envs, dtype=np.int64)
    for _ in range(-(-steps // num_envs)):
        obs, _, terminated, truncated, _ = env.step(np.asarray(policy.act(obs), dtype=np.int64).reshape(-1))
        frames = np.asarray(obs)  # (n, 64, 64, 3), the game's and the dream's alike
        paddle = find_opponent_paddle(frames)
        ball_x, ball_y = find_objects("Pong", frames).ball_xy.T
        shown = paddle.rows >= SEEN_ROWS
        frames_read += num_envs
        age += 1
        shown_at.extend(age[shown].tolist())
        pieces_at.extend(age[shown & (paddle.pieces >= 2)].tolist())
        with np.errstate(invalid="ignore"):
            approaching = shown & (ball_x <= NEAR_LEFT) & (ball_x < previous_x)
        distances.extend(np.abs(ball_y - paddle.centre_y)[approaching].tolist())
        approach_at.extend(age[approaching].tolist())
        done = terminated | truncated
        previous_x = np.where(done, np.nan, ball_x)
        age[done] = 0
        policy.reset(done)
    ages = (np.array(shown_at), np.array(pieces_at), np.array(approach_at), np.array(distances))
    figures = {"frames": frames_read, "seen": round(len(shown_at) / frames_read, 3),
               **_paddle_figures(*ages, 0, np.inf)}
    figures["by_age"] = {f"{lo + 1}-{hi}" if np.isfinite(hi) else f"{lo + 1}-": _paddle_figures(*ages, lo, hi)
                         for lo, hi in zip(AGES[:-1], AGES[1:], strict=True)}
    return figures


def _paddle_figures(shown_at: np.ndarray, pieces_at: np.ndarray, approach_at: np.ndarray, distances: np.ndarray,
                    low: float, high: float) -> dict[str, Any]:
    """In pieces, approaches and the rows from the ball over the frames of ages in (low, high]."""
    shown = int(((shown_at > low) & (shown_at <= high)).sum())
    pieces = int(((pieces_at > low) & (pieces_at <= high)).sum())
    distance = distances[(approach_at > low) & (approach_at <= high)]
    return {"in_pieces": round(pieces / shown, 3) if shown else None, "approaches": len(distance),
            "distance_median": round(float(np.median(distance)), 2) if len(distance) else None,
            "distance_over_4": round(float(np.mean(distance > MISSING_DISTANCE)), 3) if len(distance) else None}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", nargs="+", required=True, help="Pong world models (.safetensors)")
    parser.add_argument("--steps", type=int, default=2000, help="agent steps in the game and in each dream")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--policy", default="follower", help="a policy of training.agents.rollouts.make_policy")
    parser.add_argument("--denoising-steps", type=int, default=None, help="the sampler's steps (the checkpoint's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    actions = {}
    for path in args.checkpoint:  # refuse a wrong checkpoint before playing anything
        meta = read_metadata(path)
        if meta["game"] != "Pong":
            raise UserError(f"{path} is a world model of {meta['game']}: the opponent's paddle is Pong's")
        actions[path] = len(meta["action_meanings"])
    game_env = make_real_env("Pong", args.num_envs, seed=args.seed)
    try:
        print(json.dumps({"source": "game", **opponent_figures(game_env, args.policy, args.steps, args.num_envs,
                                                                 seed=args.seed)}), flush=True)
    finally:
        game_env.close()
    for path in args.checkpoint:
        dream_env = make_dream_env(path, args.num_envs, denoising_steps=args.denoising_steps)
        try:
            print(json.dumps({"source": path, **opponent_figures(dream_env, args.policy, args.steps, args.num_envs,
                                                                   actions[path], args.seed)}), flush=True)
        finally:
            dream_env.close()


if __name__ == "__main__":
    main()
