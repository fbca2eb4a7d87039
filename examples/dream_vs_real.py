"""Side by side: the real game and the dream, from the same start and with the same actions.

    python examples/dream_vs_real.py runs/Pong-demo       # writes runs/Pong-demo/dream_vs_real.gif
    python examples/dream_vs_real.py --checkpoint Pong.safetensors --out pong.gif   # random actions

An agent (the run's, else a random one) plays the real game; the world model starts from the same
4 real frames and is fed the same actions. Under the pictures, the per-frame PSNR of the dream
against the real frame shows how long the dream stays faithful (left: real, right: dream).
"""

import argparse
from pathlib import Path

import imageio.v3 as iio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from gym_diamond import load_checkpoint  # noqa: E402
from gym_diamond.atari import make_atari_env  # noqa: E402
from gym_diamond.envs.core import DreamCore  # noqa: E402
from gym_diamond.render import upscale  # noqa: E402
from training.agents import ActorCriticAgent, RandomAgent  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", type=Path, nargs="?", help="a pipeline run folder (world model and agent)")
parser.add_argument("--checkpoint", type=Path, help="a world model, instead of a run folder")
parser.add_argument("--out", type=Path, help="the GIF (default: RUN/dream_vs_real.gif)")
parser.add_argument("--steps", type=int, default=120)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()
if (args.run is None) == (args.checkpoint is None):
    parser.error("give a run folder or --checkpoint")

ckpt = load_checkpoint(args.checkpoint or args.run / "world_model.safetensors")
n_actions, L = ckpt.config.num_actions, ckpt.config.denoiser.context_length
if args.run is not None and (args.run / "actor_critic.safetensors").exists():
    from training.agent_io import load_actor_critic

    agent = ActorCriticAgent(load_actor_critic(args.run / "actor_critic.safetensors"), 1, seed=args.seed)
else:
    agent = RandomAgent(n_actions, seed=args.seed)
real = make_atari_env(ckpt.game)
real.reset(seed=args.seed)
context = np.stack([real.step(0)[0] for _ in range(L)])  # 4 no-op steps: the shared start


class SharedStart:
    """A start source (see DreamCore) that always gives the real game's context."""

    def starts(self, mask, uniform):
        return torch.as_tensor(context)[None], torch.zeros(1, L, dtype=torch.long)


dream = DreamCore(ckpt.world_model, ckpt.start_bank, num_envs=1, start_source=SharedStart(), autoreset=False)
dream.reset(seed=args.seed)
agent.reset(np.ones(1, dtype=bool))
real_obs, pairs, psnrs = context[-1], [], []
for _ in range(args.steps):
    action = int(agent.act(real_obs[None])[0])
    real_obs, _, terminated, truncated, _ = real.step(action)
    imagined = dream.step(np.array([action]))
    dream_obs = imagined.obs[0].cpu().numpy()
    mse = np.mean((real_obs.astype(np.float64) - dream_obs) ** 2)
    psnrs.append(10 * np.log10(255**2 / max(mse, 1e-10)))
    pairs.append((real_obs, dream_obs))
    if terminated or truncated or bool(imagined.done[0]):
        break

fig, ax = plt.subplots(figsize=(5.2, 1.6), dpi=100)
ax.plot(psnrs, color="tab:blue")
ax.set(xlabel="imagined step", ylabel="PSNR (dB)", xlim=(0, max(len(psnrs) - 1, 1)))
fig.tight_layout()
fig.canvas.draw()
plot = np.asarray(fig.canvas.buffer_rgba())[..., :3]
to_x = lambda step: int(round(ax.transData.transform((step, 0))[0]))  # noqa: E731  (data -> pixel column)
plt.close(fig)
gap = np.full((256, 8, 3), 255, np.uint8)
pictures = []
for step, (real_frame, dream_frame) in enumerate(pairs):
    top = np.concatenate([upscale(real_frame, 256), gap, upscale(dream_frame, 256)], axis=1)
    below = plot.copy()
    below[:, to_x(step)] = (220, 30, 30)  # where this frame is on the curve
    canvas = np.full((top.shape[0] + below.shape[0], max(top.shape[1], below.shape[1]), 3), 255, np.uint8)
    canvas[: top.shape[0], : top.shape[1]], canvas[top.shape[0]:, : below.shape[1]] = top, below
    pictures.append(canvas)
out = args.out or args.run / "dream_vs_real.gif"
iio.imwrite(out, pictures, duration=66, loop=0)
print(f"side-by-side GIF (left real, right dream), {len(pictures)} frames, PSNR {psnrs[0]:.1f} dB at step 1, "
      f"{np.mean(psnrs):.1f} dB on average: {out}")
