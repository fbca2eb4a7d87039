"""Side by side: the real game and the dream, from the same start and with the same actions.

    python examples/dream_vs_real.py runs/Pong-demo       # writes runs/Pong-demo/dream_vs_real.gif
    python examples/dream_vs_real.py --checkpoint Pong.safetensors --out pong.gif   # random actions
    python examples/dream_vs_real.py --checkpoint Pong.safetensors --follow 0.1 --out pong.gif  # a player

An agent (the run's, else ``--follow``'s scripted ball follower for Pong and Breakout, else a random
one) plays the real game; the world model starts from the same 4 real frames and is fed the same
actions. Under the pictures, the per-frame PSNR of the dream against the real frame shows how long
the dream stays faithful (left: real, right: dream).
"""

import argparse
from pathlib import Path

import gymnasium as gym
import imageio.v3 as iio
import numpy as np

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)
from gym_diamond.checkpoint import read_metadata
from gym_diamond.compare import dream_vs_real, side_by_side
from training.agents.checkpoints import load_actor_critic
from training.data.policies import ActorCriticAgent, RandomAgent
from training.data.scripted import BallFollower

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", type=Path, nargs="?", help="a pipeline run folder (world model and agent)")
parser.add_argument("--checkpoint", type=Path, help="a world model, instead of a run folder")
parser.add_argument("--out", type=Path, help="the GIF (default: RUN/dream_vs_real.gif)")
parser.add_argument("--steps", type=int, default=120)
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--follow", type=float, metavar="EPSILON", default=None,
                    help="play with the scripted ball follower, random actions with probability EPSILON")
args = parser.parse_args()
if (args.run is None) == (args.checkpoint is None):
    parser.error("give a run folder or --checkpoint")

checkpoint = args.checkpoint or args.run / "world_model.safetensors"
env = gym.make(f"DiamondDream/{read_metadata(checkpoint)['game']}-v0", checkpoint=checkpoint)
agent_file = args.run / "actor_critic.safetensors" if args.run else None
if agent_file and agent_file.exists():
    agent = ActorCriticAgent(load_actor_critic(agent_file), 1, seed=args.seed)
elif args.follow is not None:
    agent = BallFollower(read_metadata(checkpoint)["game"], env.action_space.n, epsilon=args.follow, seed=args.seed)
else:
    agent = RandomAgent(env.action_space.n, seed=args.seed)
agent.reset(np.ones(1, dtype=bool))
result = dream_vs_real(env, lambda frame: int(agent.act(frame[None])[0]), args.steps, seed=args.seed)

out = args.out or args.run / "dream_vs_real.gif"
iio.imwrite(out, side_by_side(result), duration=66, loop=0)
print(f"side-by-side GIF (left real, right dream), played by {type(agent).__name__}, {len(result)} frames, "
      f"PSNR {result.psnr[0]:.1f} dB at step 1, "
      f"{result.psnr.mean():.1f} dB on average: {out}")
