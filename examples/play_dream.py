"""Play a dream yourself: a DIAMOND world model in a pygame window, driven by your keyboard.

    pip install "gym-diamond[play]"
    python examples/play_dream.py --checkpoint Pong.safetensors [--agent runs/Pong/actor_critic.safetensors]

Arrows and space are the joystick (in Pong, RIGHT and LEFT move the paddle). Enter restarts the dream;
m hands the joystick to the agent and back; r shows the real game beside the dream (left), started
from the same frames and fed the same actions. The dream restarts by itself after "horizon" steps,
like an agent's imagination; PageUp/PageDown (or ] and [) change it. Esc quits.
"""

import argparse
from collections.abc import Iterable, Sequence

import gymnasium as gym
import numpy as np
import pygame

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)
from gym_diamond.checkpoint import read_metadata
from gym_diamond.play import Keyboard, Screen
from gym_diamond.registration import env_id
from training.agents.checkpoints import load_actor_critic
from training.data.policies import ActorCriticAgent

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--checkpoint", required=True, help="a world model .safetensors")
parser.add_argument("--agent", help="an actor-critic .safetensors to hand the joystick to with m")
parser.add_argument("--scale", type=int, default=4, help="pixels per dream pixel")
parser.add_argument("--fps", type=int, default=15)
parser.add_argument("--horizon", type=int, default=100, help="dream steps before an automatic restart")
parser.add_argument("--max-frames", type=int, help="stop after this many frames")


def main(argv: Sequence[str] | None = None, events: Iterable[list[pygame.event.Event]] | None = None) -> list[dict]:
    """Play until Esc or --max-frames; ``events`` scripts each frame's events. Returns a record per frame."""
    args = parser.parse_args(argv)
    game = read_metadata(args.checkpoint)["game"]
    env = gym.make(env_id(game), checkpoint=args.checkpoint)  # DiamondDream/<Game>-v0, or Dream-v0 for any other
    agent = ActorCriticAgent(load_actor_critic(args.agent), 1) if args.agent else None
    screen = Screen(args.scale, args.fps)
    keys, log = Keyboard(env.unwrapped.action_meanings, args.horizon, agent is not None, events), []
    over = True  # the first frame starts a dream
    while keys.poll() and len(log) != args.max_frames:
        if agent is not None and (keys.switched or keys.restart):
            agent.reset(np.ones(1, dtype=bool))  # it has not seen the frames before it took over
        if over or keys.restart:  # "ale": the dream starts from the real game, which plays on beside it
            obs, _ = env.reset(options={"start": "ale" if keys.show_real else "bank"})
            real, real_obs, action, steps, total, over = env.unwrapped.real_game, obs, None, 0, 0.0, False
        else:
            action = int(agent.act(obs[None])[0]) if keys.agent_plays else keys.action()
            obs, reward, terminated, truncated, _ = env.step(action)
            steps, total, over = steps + 1, total + reward, terminated or truncated or steps + 1 >= keys.horizon
            if keys.show_real:
                real_obs, _, real_over, real_truncated, _ = real.step(action)
                over = over or real_over or real_truncated
        screen.show([real_obs, obs] if keys.show_real else [obs], f"{game} dream{' (left: real)' * keys.show_real}"
                    f" | {'agent' if keys.agent_plays else 'human'} | return {total:+g} | step {steps}/{keys.horizon}")
        log.append(dict(action=action, step=steps, horizon=keys.horizon, agent=keys.agent_plays, size=screen.size))
    env.close()
    screen.close()
    return log


if __name__ == "__main__":
    main()
