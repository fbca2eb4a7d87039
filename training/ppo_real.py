"""``python -m training.ppo_real``: the transfer gate's control, PPO with the same budget trained in the real game.

    python -m training.ppo_real --game Pong --steps 143360 --out runs/pong-ppo-real \
        --algo-kwargs '{"n_steps": 128, "batch_size": 256, "n_epochs": 4}' --num-envs 16 --frame-stack 4

If PPO trained on real frames for as many steps does not beat a random agent either, the gate asks
more of the budget than of the dream. Same observations as the dream's (64x64 RGB, DIAMOND's
preprocessing), same evaluation as ``training.gates`` (points won per game in Pong). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv, VecFrameStack

from gym_diamond.atari import game_to_name, make_atari_env
from training.agents.evaluate import REAL_EPISODE_CAP, against_random
from training.agents.sb3 import save_policy_safetensors
from training.runtime.cli import add_algo_kwargs_argument, user_errors


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PPO trained in the real game instead of a dream: the transfer "
                                                 "gate's control.")
    parser.add_argument("--game", required=True)
    parser.add_argument("--steps", type=int, required=True, help="PPO env steps in the real game")
    parser.add_argument("--out", required=True, help="folder for the PPO model")
    add_algo_kwargs_argument(parser, "PPO")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--frame-stack", type=int, default=1)
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=REAL_EPISODE_CAP)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    game = game_to_name(args.game)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    envs = DummyVecEnv([lambda i=i: make_atari_env(game, seed=args.seed + i) for i in range(args.num_envs)])
    if args.frame_stack > 1:
        envs = VecFrameStack(envs, args.frame_stack)
    start = time.perf_counter()
    model = PPO("CnnPolicy", envs, seed=args.seed, verbose=0, **args.algo_kwargs)
    model.learn(args.steps, progress_bar=False)
    seconds = time.perf_counter() - start
    model.save(out / "model.zip")
    save_policy_safetensors(model, out, "PPO", args.frame_stack)  # so training.agents.evaluate --agent sb3:OUT reads it
    num_actions = int(envs.action_space.n)
    envs.close()
    scores = against_random(model, args.frame_stack, game, num_actions, args.episodes, args.seed, args.max_steps)
    print(json.dumps({"game": game, "trained_in": "real game", "ppo_steps": args.steps,
                      "ppo_train_seconds": round(seconds, 1), **scores}))


if __name__ == "__main__":
    main()
