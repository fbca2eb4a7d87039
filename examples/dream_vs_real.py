"""Side by side: the real game and the dream, from the same start, with the agent's actions.

    python examples/dream_vs_real.py runs/Pong-demo            # writes runs/Pong-demo/dream_vs_real.gif

The agent plays the real game; the world model is started from the same 4 real frames and fed the
same actions, so the GIF shows how long the dream stays faithful (left: real, right: dream).
"""

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gym_diamond import BatchedGenerator, load_checkpoint
from gym_diamond.atari import make_atari_env
from gym_diamond.envs.core import to_model_frames, to_uint8_frames
from gym_diamond.render import upscale
from training.agent_io import load_actor_critic
from training.agents import ActorCriticAgent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("run", type=Path, help="a pipeline run folder")
parser.add_argument("--steps", type=int, default=120)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

ckpt = load_checkpoint(args.run / "world_model.safetensors")
model, L = ckpt.world_model.eval(), ckpt.config.denoiser.context_length
agent = ActorCriticAgent(load_actor_critic(args.run / "actor_critic.safetensors"), 1, seed=args.seed)
real = make_atari_env(ckpt.game)
obs, _ = real.reset(seed=args.seed)
context = [real.step(0)[0] for _ in range(L)]  # 4 no-op steps, as a dream started from the real game
frames = to_model_frames(torch.as_tensor(np.stack(context)))[None]  # (1, L, 3, 64, 64)
actions = torch.zeros(1, L, dtype=torch.long)
state = model.burn_in(frames, actions)
generator = BatchedGenerator([args.seed])
agent.reset(np.ones(1, dtype=bool))
real_obs, pictures = context[-1], []
for _ in range(args.steps):
    action = int(agent.act(real_obs[None])[0])
    real_obs, _, terminated, truncated, _ = real.step(action)
    actions[:, -1] = action
    out = model.imagine_step(frames, actions, state, generator)
    state = out.state
    frames = torch.cat([frames[:, 1:], out.next_frame[:, None]], dim=1)
    actions = torch.cat([actions[:, 1:], torch.zeros(1, 1, dtype=torch.long)], dim=1)
    dream_obs = to_uint8_frames(out.next_frame[0]).numpy()
    gap = np.full((256, 8, 3), 255, np.uint8)
    pictures.append(Image.fromarray(np.concatenate([upscale(real_obs, 256), gap, upscale(dream_obs, 256)], axis=1)))
    if terminated or truncated:
        break
path = args.run / "dream_vs_real.gif"
pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=66, loop=0)
print(f"side-by-side GIF (left real, right dream), {len(pictures)} frames: {path}")
