"""A dream of an environment that is not Atari: MiniGrid, collected, trained and played, end to end.

    pip install minigrid
    python examples/minigrid_dream.py --steps 2000 --updates 2000 --model light   # a CPU hour or so
    python examples/minigrid_dream.py --steps 300 --updates 2 --model tiny       # seconds: every stage runs

Any Gymnasium environment with RGB image observations (or rgb_array renders) and discrete actions goes the
same way: ``python -m training.data.collect --env-id ID`` records it (frames resized to 64x64 as Atari's
are), ``python -m training.world_model`` trains on the recording, and ``gym.make("DiamondDream/Dream-v0",
checkpoint=PATH)`` opens the dream. MiniGrid's own observation is a symbolic grid; its ``RGBImgObsWrapper``
makes it pixels.
"""

import argparse
from pathlib import Path

import gymnasium as gym

import gym_diamond  # noqa: F401  (registers DiamondDream/Dream-v0)
from gym_diamond.config import MODEL_SIZES
from training.data.collect import main as collect
from training.world_model.__main__ import main as train_world_model

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--env-id", default="minigrid:MiniGrid-Empty-5x5-v0",
                    help="'module:Id' imports the module (which registers the id) first")
parser.add_argument("--steps", type=int, default=2000, help="environment steps to record")
parser.add_argument("--updates", type=int, default=2000, help="world-model updates")
parser.add_argument("--model", choices=sorted(MODEL_SIZES), default="light")
parser.add_argument("--out", default="runs/minigrid", help="run folder: data/ and world_model/")
parser.add_argument("--dream-steps", type=int, default=20)
args = parser.parse_args()

out = Path(args.out)
collect(["--env-id", args.env_id, "--wrapper", "minigrid.wrappers:RGBImgObsWrapper", "--out", str(out / "data"),
         "--steps", str(args.steps), "--num-envs", "2"])
train_world_model(["--data", str(out / "data"), "--out", str(out / "world_model"), "--steps", str(args.updates),
                   "--model", args.model, "--device", "cpu"])

checkpoint = out / "world_model" / "world_model.safetensors"
env = gym.make("DiamondDream/Dream-v0", checkpoint=checkpoint, device="cpu")
obs, _ = env.reset(seed=0)
total = 0.0
for _ in range(args.dream_steps):
    obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
    total += reward
    if terminated or truncated:
        obs, _ = env.reset()
print(f"dream of {env.unwrapped.game}: observation {obs.shape} {obs.dtype}, actions "
      f"{env.unwrapped.get_action_meanings()}, reward {total:+.0f} over {args.dream_steps} random steps")
env.close()
