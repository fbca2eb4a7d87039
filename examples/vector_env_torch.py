"""The fast path: many dreams in one batch, torch tensors in and out, a torch policy on the same device.

    python examples/vector_env_torch.py --checkpoint runs/Pong-demo/world_model.safetensors --num-envs 256

With ``output="torch"`` observations stay on the device the world model runs on (a GPU when there
is one) and actions go back as a tensor: no copy to numpy between the dream and the policy. This is
the shape of a CleanRL-style training loop; the policy here is an untrained CNN.
"""

import argparse
import time

import gymnasium as gym
import torch
from torch import nn

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--game", default="Pong")
parser.add_argument("--checkpoint", default=None, help="a world model .safetensors (default: the lookup)")
parser.add_argument("--num-envs", type=int, default=64)
parser.add_argument("--steps", type=int, default=20, help="batched steps to time")
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
args = parser.parse_args()

envs = gym.make_vec(f"DiamondDream/{args.game}-v0", num_envs=args.num_envs, checkpoint=args.checkpoint,
                    device=args.device, output="torch")
policy = nn.Sequential(nn.Conv2d(3, 16, 8, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2), nn.ReLU(),
                       nn.Flatten(), nn.LazyLinear(envs.single_action_space.n)).to(args.device)

obs, _ = envs.reset(seed=0)  # (num_envs, 64, 64, 3) uint8 tensor on the device
returns = torch.zeros(args.num_envs, device=args.device)
finished = []
start = time.perf_counter()
for _ in range(args.steps):
    with torch.no_grad():
        logits = policy(obs.permute(0, 3, 1, 2).float() / 255)
    actions = torch.distributions.Categorical(logits=logits).sample()
    obs, rewards, terminated, truncated, _ = envs.step(actions)  # every env in one batched forward pass
    returns += rewards
    done = terminated | truncated
    finished += returns[done].tolist()
    returns[done] = 0  # ended envs restarted in this same step
if args.device.startswith("cuda"):
    torch.cuda.synchronize()
seconds = time.perf_counter() - start
envs.close()
print(f"{args.num_envs * args.steps / seconds:.1f} imagined env-steps/s on {args.device} "
      f"({args.num_envs} envs x {args.steps} steps in {seconds:.2f} s); {len(finished)} episodes ended")
