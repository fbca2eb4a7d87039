"""Pictures of real, dream and their difference, to look at before believing a fidelity figure.

    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out dream.png
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out punches.png --rewarded
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out serve.png --after-point
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out bounce.png --at-paddle
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out lost.png --at-paddle --lost
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --data DATA --out bricks.png --breaks
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --agent actor_critic.safetensors --out paid.png
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --policy follower --out paid.png
    python benchmarks/dream_pictures.py --checkpoint wm.safetensors --policy follower --out twice.png --repeated

Windows of ``--data`` come from the episodes the checkpoint did not train on (``training.fidelity.held_out``: its
run's held-out split on its own data, all of data collected apart but the episodes it trained on), so its figures do
not flatter. Default: ``--windows`` random windows of them, each dreamed open loop from 4 real frames fed the real
actions; a row per window holds real | dream | |difference| at 1, 5 and 15 steps. ``--rewarded``: windows
that end on a rewarded transition; a row holds the frame it starts from, the real next frame, the dream's next
frame (one step from the real context and action) and their difference, and the command prints how often the
reward model reads the reward's sign off the real next frame and off the dream's: where the dream does not
draw what earns the reward, the second is near 0, and an agent in the dream is never rewarded for it.
``--after-point``: per window three rows, real, dream and their difference, every other step of the 20 after a
point, dreamt open loop from the real context that ends on the frame after the point and fed the real actions (Pong
serves again 16 or 17 steps after a point: does the dream?). ``--at-paddle`` (Pong, Breakout): the same three rows
over the steps after a real return of the ball off the player's paddle (``training.data.ball_paths``; 4 steps in Pong,
8 in Breakout), and the share of those windows the dream returns the ball in too; with ``--lost``, only returns the
dream does not return (it drops the ball, holds it, or sends it back too slowly). ``--breaks`` (Breakout): windows
that end on a real step that breaks bricks (``training.fidelity.bricks``); a row holds the frame it starts from, the
real next frame, the dream's (one step from the real context and actions) and their difference, and the command
prints the share of dreamt walls that are the game's brick for brick. ``--agent ACTOR_CRITIC``: closed
loop, the actor-critic plays the dream on its own frames (8 dreams, ``--steps`` steps in all); a row per dream reward
holds the ``BEFORE`` frames before it and the frame it was paid on (what an agent trained in the dream may have
learnt to exploit), and the command prints every reward's step and sign. ``--policy NAME``: the same with one of
the closed-loop gate's policies (``random``, ``follower``, ``follower-eps0.25``, ...; ``training.agents.rollouts``)
in place of an actor-critic. In a game with a ball, each reward also says how many balls the frame it was paid on
shows (``training.data.objects.count_balls``; the game shows at most one), and the command counts the rewards paid
on the step right after another in the same dream (the game never pays a point twice in a row): a dream that draws
extra balls pays for each crossing. ``--repeated`` draws only those (the frame before the paid one is the one the
first was paid on): what the dream draws between a point and its second payment.
Needs Pillow (the ``video`` extra).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from gym_diamond import BatchedGenerator, load_checkpoint, resolve_device, to_model_frames, to_uint8_frames
from training.agents.checkpoints import load_actor_critic
from training.agents.rollouts import make_dream_env, make_policy
from training.data.ball_paths import ball_positions, classify_ball_paths, paddle_moments, return_geometry
from training.data.bricks import brick_wall
from training.data.dataset import EpisodeDataset
from training.data.objects import count_balls, find_objects, object_game
from training.data.policies import ActorCriticAgent, Agent
from training.data.sampling import BatchSampler
from training.fidelity.bricks import brick_moments
from training.fidelity.held_out import held_out_episodes
from training.fidelity.measures import FIDELITY_HORIZONS, game_objects
from training.fidelity.moments import one_step_dreams
from training.fidelity.open_loop import imagine
from training.runtime.cli import add_device_argument, user_errors

HORIZONS = FIDELITY_HORIZONS
GAP = 4  # white pixels between groups


def _difference(real: np.ndarray, dream: np.ndarray) -> np.ndarray:
    return np.abs(real.astype(np.int16) - dream.astype(np.int16)).astype(np.uint8)


def _gap(height: int) -> np.ndarray:
    return np.full((height, GAP, 3), 255, np.uint8)


def _real_dream_difference(real: list[np.ndarray], dream: list[np.ndarray]) -> list[np.ndarray]:
    """Three rows, the real frames, the dream's and their |difference|, side by side, and a white gap below."""
    return [np.concatenate(real, 1), np.concatenate(dream, 1),
            np.concatenate([_difference(r, f) for r, f in zip(real, dream, strict=True)], 1),
            np.full((GAP, real[0].shape[1] * len(real), 3), 255, np.uint8)]


def horizon_rows(model, dataset: EpisodeDataset, windows: int, seed: int, episode_ids: np.ndarray) -> np.ndarray:
    """Rows of real | dream | difference at each of ``HORIZONS`` steps for ``windows`` random windows."""
    L, H = model.config.denoiser.context_length, max(HORIZONS)
    segments = BatchSampler(dataset).sample_segments(8 * windows, L + H, np.random.default_rng(seed),
                                                     episode_ids=episode_ids)
    whole = np.flatnonzero(segments.frame_mask.all(1))[:windows]
    if whole.size == 0:
        raise ValueError(f"no window of {L + H} frames in {dataset.root}: the episodes are too short")
    frames = to_model_frames(torch.as_tensor(segments.frames[whole], device=model.device))
    actions = torch.as_tensor(segments.actions[whole], device=model.device).long()
    dream = imagine(model, "fp32", frames, actions, L, H)
    dreamed = {h: to_uint8_frames(dream.frames[h]).cpu().numpy() for h in HORIZONS}
    rows = []
    for i, row in enumerate(whole):
        cells = []
        for h in HORIZONS:
            real = segments.frames[row, L - 1 + h]
            cells += [real, dreamed[h][i], _difference(real, dreamed[h][i]), _gap(real.shape[0])]
        rows.append(np.concatenate(cells[:-1], 1))
    return np.concatenate(rows, 0)


@torch.no_grad()
def rewarded_rows(model, dataset: EpisodeDataset, windows: int, seed: int, episode_ids: np.ndarray
                  ) -> tuple[np.ndarray, dict[str, float]]:
    """Rows of frame t | real t+1 | dream t+1 | difference at rewarded transitions, and the reward model's reads."""
    L = model.config.denoiser.context_length
    episodes, steps = BatchSampler(dataset).sample_rewarded_transitions(8 * max(windows, 8),
                                                                        np.random.default_rng(seed),
                                                                        episode_ids=episode_ids)
    segments = dataset.get_segments(episodes, steps - (L - 1), L)  # frames t-L+1 .. t+1, actions up to t
    whole = np.flatnonzero(segments.frame_mask.all(1))
    if whole.size == 0:
        raise ValueError(f"no rewarded transition in {dataset.root} has {L} frames before it")
    frames = to_model_frames(torch.as_tensor(segments.frames[whole], device=model.device))
    actions = torch.as_tensor(segments.actions[whole], device=model.device).long()
    model.eval()
    generator = BatchedGenerator([seed * 1_000_003 + k for k in range(len(whole))], device=model.device)
    dreamed = model.imagine_step(frames[:, :L], actions[:, :L], generator=generator).next_frame
    signs = np.sign(segments.rewards[whole, -1]).astype(int)

    def read(next_frames: torch.Tensor) -> np.ndarray:
        out = model.rew_end(frames[:, L - 1:L], actions[:, L - 1:L], next_frames[:, None])
        return out.reward_logits[:, -1].argmax(-1).cpu().numpy() - 1

    on_real, on_dream = read(frames[:, L]), read(dreamed)
    figures = {"rewarded_transitions": int(len(whole)),
               "reward_read_on_real_next_frame": float(np.mean(on_real == signs)),
               "reward_read_on_dream_next_frame": float(np.mean(on_dream == signs)),
               "any_reward_on_dream_next_frame": float(np.mean(on_dream != 0))}
    dream_uint8 = to_uint8_frames(dreamed).cpu().numpy()
    rows = []
    for i in range(min(windows, len(whole))):
        start, real = segments.frames[whole[i], L - 1], segments.frames[whole[i], L]
        rows.append(np.concatenate([start, _gap(real.shape[0]), real, dream_uint8[i],
                                    _difference(real, dream_uint8[i])], 1))
    return np.concatenate(rows, 0), figures


AFTER_POINT = 20  # steps dreamed after a point in --after-point rows: Pong serves again 16 or 17 steps after


@torch.no_grad()
def after_point_rows(model, dataset: EpisodeDataset, windows: int, seed: int, episode_ids: np.ndarray
                     ) -> tuple[np.ndarray, dict[str, float]]:
    """Per window real, dream and |difference| rows, every other step of the ``AFTER_POINT`` steps dreamed open loop
    (fed the real actions) from the context that ends on the frame after a point; and, for a game with a ball, the
    share of windows whose real and dreamt frames show the ball again by the last step."""
    L = model.config.denoiser.context_length
    episodes, steps = BatchSampler(dataset).sample_rewarded_transitions(8 * max(windows, 8),
                                                                        np.random.default_rng(seed),
                                                                        episode_ids=episode_ids)
    segments = dataset.get_segments(episodes, steps + 2 - L, L - 1 + AFTER_POINT)  # context: frames t+2-L .. t+1
    whole = np.flatnonzero(segments.frame_mask.all(1))[:windows]
    if whole.size == 0:
        raise ValueError(f"no point in {dataset.root} has {L} frames up to it and {AFTER_POINT} after")
    frames = to_model_frames(torch.as_tensor(segments.frames[whole], device=model.device))
    actions = torch.as_tensor(segments.actions[whole], device=model.device).long()
    model.eval()
    dream = imagine(model, "fp32", frames, actions, L, AFTER_POINT - 1)
    shown = range(2, AFTER_POINT, 2)  # steps after the frame that follows the point
    dreamt = {h: to_uint8_frames(dream.frames[h]).cpu().numpy() for h in shown}
    rows = []
    for i, row in enumerate(whole):
        rows += _real_dream_difference([segments.frames[row, L - 1 + h] for h in shown], [dreamt[h][i] for h in shown])
    figures: dict[str, float] = {"windows": int(len(whole))}
    if dataset.game is not None and "ball" in game_objects(dataset.game):
        game, last = object_game(dataset.game), max(shown)
        figures["ball_back_real"] = float(find_objects(game, segments.frames[whole, L - 1 + last]).ball_visible.mean())
        figures["ball_back_dream"] = float(find_objects(game, dreamt[last]).ball_visible.mean())
    return np.concatenate(rows[:-1], 0), figures


LOST_CANDIDATES = 64  # returns dreamt with --at-paddle --lost, to find the windows the dream loses


def at_paddle_rows(model, dataset: EpisodeDataset, windows: int, seed: int, episode_ids: np.ndarray,
                   lost_only: bool = False) -> tuple[np.ndarray | None, dict[str, float]]:
    """Per window real, dream and |difference| rows at each of the game's return-horizon steps after a real return of
    the ball off the player's paddle, dreamt open loop from the real context fed the real actions; and the share of
    windows in which the dream returns the ball too (``training.data.ball_paths.classify_ball_paths``).
    ``lost_only``: up to ``LOST_CANDIDATES`` returns are dreamt and the rows show the first ``windows`` the dream does
    not return (None where it returns them all); the share is over every return dreamt."""
    L = model.config.denoiser.context_length
    returns = paddle_moments(dataset, episode_ids, L)["returns"]  # checks the game
    geometry = return_geometry(dataset.game)
    if not returns:
        raise ValueError(f"no return of the ball off the player's paddle in {dataset.root}")
    dreamt_windows = max(windows, LOST_CANDIDATES) if lost_only else windows
    chosen = [returns[i] for i in np.sort(np.random.default_rng(seed).permutation(len(returns))[:dreamt_windows])]
    segments = dataset.get_segments(np.array([e for e, _ in chosen], np.int64),
                                    np.array([s - L + 1 for _, s in chosen], np.int64), L - 1 + geometry.horizon)
    frames = to_model_frames(torch.as_tensor(segments.frames, device=model.device))
    actions = torch.as_tensor(segments.actions, device=model.device).long()
    model.eval()
    dream = imagine(model, "fp32", frames, actions, L, geometry.horizon)
    steps = range(1, geometry.horizon + 1)
    dreamt = np.stack([to_uint8_frames(dream.frames[h]).cpu().numpy() for h in steps], axis=1)
    start = ball_positions(dataset.game, segments.frames[:, L - 1])
    path = np.stack([ball_positions(dataset.game, dreamt[:, h - 1]) for h in steps], axis=1)
    returned = classify_ball_paths(start, path, geometry.goal_line)[0]
    shown = np.flatnonzero(~returned)[:windows] if lost_only else np.arange(len(chosen))
    figures = {"windows": len(shown), "returned_dream": float(returned.mean())}
    if lost_only:
        figures["returns_dreamt"] = len(chosen)
    rows = []
    for i in shown:
        rows += _real_dream_difference([segments.frames[i, L - 1 + h] for h in steps], list(dreamt[i]))
    return (np.concatenate(rows[:-1], 0) if rows else None), figures


def break_rows(model, dataset: EpisodeDataset, windows: int, seed: int, episode_ids: np.ndarray
               ) -> tuple[np.ndarray, dict[str, float]]:
    """Rows of frame s | real s+1 | dream s+1 | difference at ``windows`` real steps s that break Breakout bricks, and
    the share of them whose dreamt wall is the game's."""
    model.eval()
    breaks = brick_moments(dataset, episode_ids, model.config.denoiser.context_length)["breaks"]  # checks the game
    if not breaks:
        raise ValueError(f"no step of {dataset.root} breaks a brick")
    chosen = [breaks[i] for i in np.sort(np.random.default_rng(seed).permutation(len(breaks))[:windows])]
    batches = list(one_step_dreams(model, dataset, chosen, seed, batch_size=64))
    real, dream = (np.concatenate(frames) for frames in zip(*batches, strict=True))
    same = (brick_wall(real) == brick_wall(dream)).all((1, 2))
    rows = [np.concatenate([dataset.episode(e).frames[s], _gap(real.shape[1]), real[i], dream[i],
                            _difference(real[i], dream[i])], 1) for i, (e, s) in enumerate(chosen)]
    return np.concatenate(rows, 0), {"windows": len(chosen), "break_drawn": float(same.mean())}


BEFORE = 8  # frames shown before each dream reward in --agent rows
DREAMS = 8  # dreams the agent plays at once


def held_out_data(data: str, checkpoint) -> tuple[EpisodeDataset, np.ndarray]:
    """The dataset at ``data`` and the ids of its episodes ``checkpoint`` did not train on."""
    dataset = EpisodeDataset(data, game=checkpoint.game)
    return dataset, held_out_episodes(dataset, checkpoint.provenance)


@torch.no_grad()
def agent_reward_rows(checkpoint, agent: Agent, steps: int, windows: int, seed: int, repeated_only: bool = False
                      ) -> tuple[np.ndarray | None, list[dict[str, int]]]:
    """Rows of the ``BEFORE`` frames before a dream reward and the frame it was paid on (``repeated_only``: of the
    rewards paid on the step right after another of the same dream), ``agent`` (acting for ``DREAMS`` envs) playing
    ``checkpoint``'s dream on its own frames; and every reward's step, dream and sign, with the balls on the paid
    frame where the game has a ball."""
    env = make_dream_env(checkpoint, DREAMS)
    has_ball = "ball" in game_objects(checkpoint.game)
    obs, _ = env.reset(seed=seed)
    agent.reset(np.ones(DREAMS, dtype=bool))
    blank = np.zeros_like(obs[0])
    history = [[blank] * BEFORE for _ in range(DREAMS)]
    rows, paid = [], []
    paid_before = np.zeros(DREAMS, dtype=bool)  # each dream paid a reward on the step before
    for step in range(-(-steps // DREAMS)):
        for i in range(DREAMS):
            history[i] = [*history[i][1:], obs[i]]
        obs, rewards, terminated, truncated, infos = env.step(agent.act(obs))
        ended = np.asarray(terminated) | np.asarray(truncated)
        for i in np.flatnonzero(np.asarray(rewards) != 0):
            last = np.asarray(infos["final_obs"][i]) if ended[i] else obs[i]  # an ended dream's obs is the next start
            reward = {"step": step, "dream": int(i), "sign": int(np.sign(rewards[i]))}
            if has_ball:
                reward["balls"] = int(count_balls(checkpoint.game, last[None])[0])
            paid.append(reward)
            if len(rows) < windows and (paid_before[i] or not repeated_only):
                rows.append(np.concatenate([*history[i], _gap(last.shape[0]), last], 1))
        paid_before = np.asarray(rewards) != 0
        if ended.any():
            agent.reset(ended)
            for i in np.flatnonzero(ended):
                history[i] = [blank] * BEFORE
    return (np.concatenate(rows, 0) if rows else None), paid


def rewards_right_after_another(paid: list[dict[str, int]]) -> int:
    """How many of the rewards were paid on the step right after another reward of the same dream."""
    steps = {(r["dream"], r["step"]) for r in paid}
    return sum((r["dream"], r["step"] - 1) in steps for r in paid)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a world model (.safetensors)")
    parser.add_argument("--data", help="a dataset folder (python -m training.data.collect); not with --agent or "
                                       "--policy")
    player = parser.add_mutually_exclusive_group()
    player.add_argument("--agent", help="an actor-critic (.safetensors) to play the dream in closed loop")
    player.add_argument("--policy", help="a closed-loop gate policy to play the dream in closed loop: random, "
                                         "follower, follower-eps0.25, ... (training.agents.rollouts.make_policy)")
    parser.add_argument("--repeated", action="store_true",
                        help="with --agent or --policy: draw only the rewards paid on the step right after another")
    parser.add_argument("--steps", type=int, default=4000, help="with --agent or --policy: dream steps in all")
    parser.add_argument("--out", required=True, help="the PNG to write")
    parser.add_argument("--windows", type=int, default=4, help="rows of the picture")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--rewarded", action="store_true",
                      help="windows ending on a rewarded transition, one step ahead, with the reward model's reads")
    kind.add_argument("--after-point", action="store_true",
                      help=f"real, dream and difference rows over the {AFTER_POINT} steps after a point, dreamt from "
                           f"the real context and actions: does the dream serve the ball again?")
    kind.add_argument("--breaks", action="store_true",
                      help="windows ending on a real step that breaks bricks, dreamt one step (Breakout)")
    kind.add_argument("--at-paddle", action="store_true",
                      help="real, dream and difference rows over the steps after a real return of the ball off the "
                           "player's paddle: does the dream bounce it where the game does? (Pong, Breakout)")
    parser.add_argument("--lost", action="store_true",
                        help=f"with --at-paddle: only returns the dream does not return (of {LOST_CANDIDATES} dreamt)")
    parser.add_argument("--denoising-steps", type=int, default=None,
                        help="Euler steps of the dream's sampler (default: the checkpoint's own)")
    parser.add_argument("--scale", type=int, default=2, help="pixels per frame pixel")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.windows < 1 or args.scale < 1 or (args.denoising_steps is not None and args.denoising_steps < 1):
        parser.error("--windows, --scale and --denoising-steps must be >= 1")
    if args.lost and not args.at_paddle:
        parser.error("--lost goes with --at-paddle")
    closed_loop = args.agent is not None or args.policy is not None
    if closed_loop == (args.data is not None):
        parser.error("give --data (open loop), or --agent or --policy (closed loop)")
    if args.repeated and not closed_loop:
        parser.error("--repeated goes with --agent or --policy")
    checkpoint = load_checkpoint(args.checkpoint, device=resolve_device(args.device))
    if args.denoising_steps is not None:
        model = checkpoint.world_model
        model.config = model.config.with_denoising_steps(args.denoising_steps)
    if closed_loop:
        if args.agent is not None:
            agent = ActorCriticAgent(load_actor_critic(args.agent, device=checkpoint.world_model.device), DREAMS,
                                     seed=args.seed)
        else:
            agent = make_policy(args.policy, checkpoint.game, checkpoint.config.num_actions, args.seed)
        picture, paid = agent_reward_rows(checkpoint, agent, args.steps, args.windows, args.seed, args.repeated)
        print(json.dumps({"checkpoint": args.checkpoint, "agent": args.agent, "policy": args.policy,
                          "denoising_steps": checkpoint.world_model.config.sampler.num_steps, "steps": args.steps,
                          "rewards": paid,
                          "rewards_right_after_another": rewards_right_after_another(paid)}))
        if picture is None:
            print(f"no reward{' paid right after another' if args.repeated else ''} in the dream: no picture")
            return
        columns = f"{BEFORE} frames before a dream reward | the frame it was paid on"
    elif args.rewarded:
        dataset, held = held_out_data(args.data, checkpoint)
        picture, figures = rewarded_rows(checkpoint.world_model, dataset, args.windows, args.seed, held)
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, **figures}))
        columns = "frame t | real t+1, dream t+1, |difference|"
    elif args.at_paddle:
        dataset, held = held_out_data(args.data, checkpoint)
        picture, figures = at_paddle_rows(checkpoint.world_model, dataset, args.windows, args.seed, held, args.lost)
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, **figures}))
        if picture is None:
            print(f"the dream returns all {figures['returns_dreamt']} returns dreamt: no picture")
            return
        columns = "rows real, dream, |difference| at each step after the ball reaches the player's paddle"
    elif args.breaks:
        dataset, held = held_out_data(args.data, checkpoint)
        picture, figures = break_rows(checkpoint.world_model, dataset, args.windows, args.seed, held)
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, **figures}))
        columns = "frame s | real s+1, dream s+1, |difference| at steps that break bricks"
    elif args.after_point:
        dataset, held = held_out_data(args.data, checkpoint)
        picture, figures = after_point_rows(checkpoint.world_model, dataset, args.windows, args.seed, held)
        print(json.dumps({"checkpoint": args.checkpoint, "data": args.data, **figures}))
        columns = f"rows real, dream, |difference| at every other step up to {AFTER_POINT} after a point"
    else:
        dataset, held = held_out_data(args.data, checkpoint)
        picture = horizon_rows(checkpoint.world_model, dataset, args.windows, args.seed, held)
        columns = "real, dream, |difference| at " + ", ".join(map(str, HORIZONS)) + " steps"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).resize((picture.shape[1] * args.scale, picture.shape[0] * args.scale),
                                    Image.NEAREST).save(args.out)
    print(f"wrote {args.out} ({columns})")


if __name__ == "__main__":
    main()
