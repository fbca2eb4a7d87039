"""Play a dream yourself: a DIAMOND world model in a pygame window, driven by your keyboard.

    pip install "gym-diamond[play]"
    python examples/play_dream.py --checkpoint Pong.safetensors [--agent runs/Pong/actor_critic.safetensors]

Arrows and space are the joystick: held together they make the game's combined actions (UPRIGHT,
LEFTFIRE, ...) where it has them; in Pong, RIGHT and LEFT move the paddle up and down. Enter restarts the
dream; m hands the joystick to the agent and back (with --agent); r shows the real game beside the dream
(left: real, right: dream), both started from the same real frames and fed the same actions, to see how
long the dream stays faithful. The dream restarts by itself after "horizon" steps, like an agent's
imagination; since the arrows belong to the game, PageUp/PageDown (or ] and [) change the horizon.
The window caption shows the game, who plays, the return so far and the horizon. Esc quits.
"""

import argparse
from collections.abc import Iterable, Sequence

import gymnasium as gym
import numpy as np
import pygame

import gym_diamond  # noqa: F401  (registers the DiamondDream/<Game>-v0 ids)
from gym_diamond.checkpoint import read_metadata
from gym_diamond.render import upscale
from training.agent_io import load_actor_critic
from training.agents import ActorCriticAgent

JOYSTICK = {pygame.K_UP: "UP", pygame.K_DOWN: "DOWN", pygame.K_LEFT: "LEFT", pygame.K_RIGHT: "RIGHT",
            pygame.K_SPACE: "FIRE"}
HORIZON_KEYS = {pygame.K_PAGEUP: 10, pygame.K_RIGHTBRACKET: 10, pygame.K_PAGEDOWN: -10, pygame.K_LEFTBRACKET: -10}
ORDER = ("UP", "DOWN", "RIGHT", "LEFT", "FIRE")  # how ALE spells combined actions: "UPRIGHT", "DOWNLEFTFIRE"


def action_for(pressed: set[str], meanings: list[str]) -> int:
    """The action whose meaning is exactly the pressed set ({"UP", "FIRE"} -> "UPFIRE"), else NOOP."""
    name = "".join(part for part in ORDER if part in pressed) or "NOOP"
    return meanings.index(name if name in meanings else "NOOP")


def main(argv: Sequence[str] | None = None, events: Iterable[list[pygame.event.Event]] | None = None
         ) -> list[dict]:
    """Play until the window closes or --max-frames; ``events`` scripts each frame's events instead of the keyboard.

    Returns one record per frame (action, dream step, horizon, who played, window size), for tests.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a world model .safetensors")
    parser.add_argument("--agent", help="an actor-critic .safetensors to hand the joystick to with m")
    parser.add_argument("--scale", type=int, default=4, help="pixels per dream pixel")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--horizon", type=int, default=100, help="dream steps before an automatic restart")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames")
    args = parser.parse_args(argv)

    game = read_metadata(args.checkpoint)["game"]
    env = gym.make(f"DiamondDream/{game}-v0", checkpoint=args.checkpoint)
    meanings, denoising = env.unwrapped.action_meanings, env.unwrapped.core.model.config.sampler.num_steps
    agent = ActorCriticAgent(load_actor_critic(args.agent), 1) if args.agent else None
    pygame.init()
    clock, screen, script = pygame.time.Clock(), None, None if events is None else iter(events)
    held, horizon, use_agent, show_real = set(), args.horizon, False, False
    restart, running, log = True, True, []
    while running and len(log) != args.max_frames:
        for event in pygame.event.get() if script is None else next(script, []):
            if event.type == pygame.QUIT:
                running = False
            elif event.type == pygame.KEYUP:
                held.discard(JOYSTICK.get(event.key))
            elif event.type == pygame.KEYDOWN:
                if event.key in JOYSTICK:
                    held.add(JOYSTICK[event.key])
                elif event.key in HORIZON_KEYS:
                    horizon = max(1, horizon + HORIZON_KEYS[event.key])
                elif event.key == pygame.K_m and agent is not None:
                    use_agent = not use_agent
                    agent.reset(np.ones(1, dtype=bool))  # it did not see the frames before it took over
                elif event.key == pygame.K_r:
                    show_real = not show_real
                    restart = restart or show_real  # the real view needs both to start afresh, together
                elif event.key == pygame.K_RETURN:
                    restart = True
                elif event.key == pygame.K_ESCAPE:
                    running = False
        if not running:
            break
        if restart:  # "ale" starts the dream from 4 real frames; the real game that made them plays on beside it
            obs, _ = env.reset(options={"start": "ale" if show_real else "bank"})
            real = env.unwrapped.core.start_source.envs[0] if show_real else None
            real_obs, action, steps, total, restart = obs, None, 0, 0.0, False
            if agent is not None:
                agent.reset(np.ones(1, dtype=bool))
        else:
            action = int(agent.act(obs[None])[0]) if use_agent else action_for(held, meanings)
            obs, reward, terminated, truncated, _ = env.step(action)
            steps, total = steps + 1, total + reward
            restart = terminated or truncated or steps >= horizon
            if show_real:
                real_obs, _, real_over, real_truncated, _ = real.step(action)
                restart = restart or real_over or real_truncated
        frames = [real_obs, obs] if show_real else [obs]
        picture = np.concatenate([upscale(frame, obs.shape[0] * args.scale) for frame in frames], axis=1)
        if screen is None or screen.get_size() != picture.shape[1::-1]:
            screen = pygame.display.set_mode(picture.shape[1::-1])
        pygame.surfarray.blit_array(screen, picture.swapaxes(0, 1))  # surfarray is (width, height, 3)
        pygame.display.set_caption(f"{game} dream{' (left: real)' if show_real else ''} | "
                                   f"{'agent' if use_agent else 'human'} | return {total:+g} | step {steps}, "
                                   f"horizon {horizon} | {denoising} denoising steps")
        pygame.display.flip()
        clock.tick(args.fps)
        log.append(dict(action=action, step=steps, horizon=horizon, agent=use_agent, size=screen.get_size()))
    env.close()
    pygame.quit()
    return log


if __name__ == "__main__":
    main()
