"""Quickstart: a random agent in a dream, its returns, and a GIF of the dream.

    python examples/quickstart.py --checkpoint runs/Pong-demo/world_model.safetensors
    python examples/quickstart.py      # Pong's shipped dream, or $GYM_DIAMOND_HOME/Pong.safetensors

The dream is an ordinary Gymnasium environment: reset, step, render. Everything it shows (frames,
rewards, the end of an episode) is imagined by the world model.
"""

import argparse

import gymnasium as gym
import imageio.v3 as iio

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)
from gym_diamond.checkpoint import read_metadata
from gym_diamond.registration import env_id

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--game", default="Pong", help="the game whose dream the lookup finds (without --checkpoint)")
parser.add_argument("--checkpoint", default=None, help="a world model .safetensors (default: the lookup)")
parser.add_argument("--episodes", type=int, default=3)
parser.add_argument("--max-steps", type=int, default=300, help="dream steps per episode at most")
parser.add_argument("--gif", default="quickstart.gif")
args = parser.parse_args()

game = read_metadata(args.checkpoint)["game"] if args.checkpoint else args.game  # an Atari game or any environment
env = gym.make(env_id(game), checkpoint=args.checkpoint, render_mode="rgb_array", max_episode_steps=args.max_steps)
pictures = []
for episode in range(args.episodes):
    obs, info = env.reset(seed=episode)
    episode_return, steps, done = 0.0, 0, False
    while not done:
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        episode_return, steps, done = episode_return + reward, steps + 1, terminated or truncated
        if episode == 0:
            pictures.append(env.render())  # (256, 256, 3) uint8, the 64x64 dream upscaled
    ending = "terminated" if terminated else "truncated"
    print(f"episode {episode}: return {episode_return:+.0f} in {steps} steps ({ending})")
env.close()
iio.imwrite(args.gif, pictures, duration=66, loop=0)
print(f"GIF of the first episode's dream ({len(pictures)} frames): {args.gif}")
