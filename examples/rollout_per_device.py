"""Several GPUs: one rollout worker per device, each stepping its own batch of dreams.

    python examples/rollout_per_device.py --checkpoint runs/Pong-demo/world_model.safetensors --num-envs 512

A ``DreamVectorEnv`` runs on one device (``device="cuda:1"``). To dream on every GPU, make one per
device and step them side by side: here a thread each (CUDA kernels run while other threads queue
theirs), each with its own policy copy, collecting returns; a learner would gather them. Without
GPUs it runs ``--cpu-workers`` workers on the CPU, to show the shape. For training across GPUs use
``torchrun`` (README, "Several GPUs and nodes").
"""

import argparse
import threading
import time

import gymnasium as gym
import torch
from torch import nn

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--game", default="Pong")
parser.add_argument("--checkpoint", default=None, help="a world model .safetensors (default: the lookup)")
parser.add_argument("--num-envs", type=int, default=64, help="dreams per device")
parser.add_argument("--steps", type=int, default=20)
parser.add_argument("--cpu-workers", type=int, default=2, help="workers when there is no GPU")
args = parser.parse_args()

gpus = torch.cuda.device_count()
devices = [f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"] * args.cpu_workers


def worker(rank: int, device: str, results: dict) -> None:
    envs = gym.make_vec(f"DiamondDream/{args.game}-v0", num_envs=args.num_envs, checkpoint=args.checkpoint,
                        device=device, output="torch")
    torch.manual_seed(rank)
    policy = nn.Sequential(nn.Conv2d(3, 16, 8, stride=4), nn.ReLU(), nn.Flatten(),
                           nn.LazyLinear(envs.single_action_space.n)).to(device)
    obs, _ = envs.reset(seed=1000 * rank)  # distinct dreams on each device
    returns, finished = torch.zeros(args.num_envs, device=device), []
    for _ in range(args.steps):
        with torch.no_grad():
            actions = torch.distributions.Categorical(logits=policy(obs.permute(0, 3, 1, 2).float() / 255)).sample()
        obs, rewards, terminated, truncated, _ = envs.step(actions)
        returns += rewards
        done = terminated | truncated
        finished += returns[done].tolist()
        returns[done] = 0
    envs.close()
    results[rank] = (device, finished)


results: dict = {}
start = time.perf_counter()
threads = [threading.Thread(target=worker, args=(rank, device, results)) for rank, device in enumerate(devices)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
seconds = time.perf_counter() - start
for rank in sorted(results):
    device, finished = results[rank]
    print(f"worker {rank} on {device}: {args.num_envs * args.steps} imagined steps, {len(finished)} episodes ended")
total = len(devices) * args.num_envs * args.steps
print(f"{len(devices)} workers: {total / seconds:.1f} imagined env-steps/s together")
