"""PPO from stable-baselines3, trained only in a dream, then judged in the real game beside a random agent.

    python examples/sb3_ppo_in_dream.py --checkpoint runs/Pong-demo/world_model.safetensors --steps 100000

Any SB3 algorithm works the same way; `python -m training.agents.sb3` adds periodic real-game
evaluation, frame stacking and resumption around this.
"""

import argparse

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecMonitor

from gym_diamond.envs.sb3 import DreamSB3VecEnv
from training.agents.evaluate import evaluate
from training.data.policies import RandomAgent, SB3Agent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", required=True, help="a world model .safetensors")
parser.add_argument("--steps", type=int, default=100_000, help="env steps in the dream")
parser.add_argument("--num-envs", type=int, default=8, help="dreams stepped together in one batch")
parser.add_argument("--n-steps", type=int, default=128, help="PPO rollout length per env")
parser.add_argument("--episodes", type=int, default=5, help="real-game evaluation episodes")
parser.add_argument("--eval-max-steps", type=int, default=27_000, help="cut real episodes after this many steps")
args = parser.parse_args()

dream = VecMonitor(DreamSB3VecEnv.from_checkpoint(args.checkpoint, num_envs=args.num_envs))
game = dream.get_attr("game")[0]
model = PPO("CnnPolicy", dream, n_steps=args.n_steps, batch_size=min(256, args.n_steps * args.num_envs), seed=0)
model.learn(total_timesteps=args.steps)  # SB3 transposes the uint8 HWC frames for its CNN itself
dream.close()

num_actions = int(model.action_space.n)
for name, agent in [("PPO (trained in the dream)", SB3Agent(model)), ("random", RandomAgent(num_actions))]:
    result = evaluate(agent, game, args.episodes, num_envs=1, max_steps=args.eval_max_steps)
    hns = "" if result.hns is None else f", human-normalised {result.hns:.3f}"
    print(f"{name}: real {game} return {result.mean:.1f} +- {result.std:.1f} over {args.episodes} episodes{hns}")
