"""DIAMOND end to end from Python: collect real play, train the world model and the agent, evaluate.

    python examples/full_pipeline.py --game Pong --preset demo       # minutes on a CPU
    python examples/full_pipeline.py --game Breakout --preset paper  # the paper's budget, on a GPU

Re-running the same command resumes the run folder where it stopped.
"""

import argparse

import gymnasium as gym

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)
from training.pipeline import Pipeline
from training.presets import PRESETS

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--game", default="Pong")
parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="the run's size")
parser.add_argument("--out", default=None, help="run folder (default: runs/<game>-<preset>)")
args = parser.parse_args()

report = Pipeline(args.game, args.out or f"runs/{args.game}-{args.preset}", preset=args.preset).run()
final = report["final_evaluation"]
print(f"real-game score {final['mean']:.1f} +- {final['std']:.1f} (HNS {final['hns']}) after "
      f"{report['env_steps']} real steps; time per stage (s): {report['seconds_per_stage']}")

# the world model it trained is a dream like any other
env = gym.make(f"DiamondDream/{args.game}-v0", checkpoint=report["world_model"])
obs, _ = env.reset(seed=0)
obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
print(f"dream of {args.game}: observation {obs.shape} {obs.dtype}, world model at {report['world_model']}")
