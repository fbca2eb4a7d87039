"""Build a paper-size DIAMOND world model and imagine 50 frames from random start frames.

The weights are untrained, so the frames are noise; the point is the shape of the API and the cost of
one imagined step on your machine:  python examples/imagine_untrained.py --device cpu
"""

import argparse
import time

import torch

from gym_diamond import BatchedGenerator, WorldModel, WorldModelConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--num-envs", type=int, default=4)
parser.add_argument("--steps", type=int, default=50)
parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
args = parser.parse_args()

torch.manual_seed(0)
model = WorldModel(WorldModelConfig(num_actions=6)).to(args.device).eval()
counts = model.num_parameters()
print(f"world model: denoiser {counts['denoiser']:,} parameters, reward/termination {counts['rew_end']:,}")

n, L = args.num_envs, model.config.denoiser.context_length
frames = torch.rand(n, L, *model.frame_shape, device=args.device) * 2 - 1  # (n, 4, 3, 64, 64) in [-1, 1]
actions = torch.randint(0, 6, (n, L), device=args.device)
state = model.burn_in(frames, actions)
generator = BatchedGenerator(range(n), device=args.device)  # one reproducible stream per environment

start = time.perf_counter()
for step in range(args.steps):
    out = model.imagine_step(frames, actions, state, generator)
    state = out.state
    frames = torch.cat([frames[:, 1:], out.next_frame[:, None]], dim=1)  # roll the frame history
    actions = torch.cat([actions[:, 1:], torch.randint(0, 6, (n, 1), device=args.device)], dim=1)
    if step % 10 == 0:
        print(f"step {step:3d}: mean pixel {out.next_frame.mean():+.3f}, rewards {out.reward.tolist()}")
elapsed = time.perf_counter() - start
print(f"imagined {args.steps} frames x {n} envs on {args.device} in {elapsed:.1f} s: "
      f"{args.steps * n / elapsed:.1f} env-steps/s, {1000 * elapsed / args.steps:.0f} ms per batched step")
