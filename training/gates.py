"""The quality gates a world model must pass before it ships, measured in one command.

    python -m training.gates --checkpoint runs/pong-wm/world_model.safetensors \
        --test-data data/pong-apart --out runs/pong-gates --denoising-steps 1 3

On held-out real episodes: the split ``training.world_model --test-fraction`` kept out, or
(``--test-data``) a dataset collected apart, which can hold more of the rare events. PSNR alone
cannot see what control needs (a dream that drops the one-pixel Pong ball loses almost nothing in
PSNR), so the gates look where the game is:

1. Open loop (the dream started from 4 real frames, fed the real actions; ``training.fidelity.open_loop``), for
   each ``--denoising-steps`` given, at 1, 5 and 15 steps:
   - pooled PSNR beats repeat-last-frame at 1 and 5 steps (necessary, no longer sufficient);
   - objects (Pong, Breakout; ``training.data.objects``): of the real frames that show the ball, the dream
     shows one in at least 90% at every horizon, and its ball lies within 2 pixels of the real one more
     often than repeat-last's does, at every horizon. The player's paddle is reported beside.
2. Events: reward sign and termination recall and precision at least 0.8 each, judged by the
   reward/termination model on the real next frames and again on the dream's own next frames
   (``training.fidelity.open_loop.dream_event_confusion``): a dream that never draws a point being scored fails
   the second. The dream's events are judged over whole held-out episodes up to ``--dream-event-steps`` and the
   end of every other held-out episode, so each game's end is judged. On real frames the events are judged twice:
   over fresh sequences of 19 transitions (``events``: DIAMOND's training sequences and 15-step imagination, which
   the actor-critic's imagination reads) and over whole episodes as a gymnasium dream reads them, its LSTM states
   restarted in turn (``whole_episode_events``, ``training.fidelity.episode_reads``): an LSTM read past its
   training length calls endings that are not there. A gate with no event to judge is reported as such, not
   passed.
3. Closed loop (``training.fidelity.closed_loop``): each policy (random, ball follower at epsilon 0, 0.25, 0.5)
   plays the dream from its own start contexts and the real game; its event rates (Pong: points won and
   lost; Breakout: bricks and lives lost, per 1,000 steps) lie within 30% of the game's, and the dream
   ranks the policies as the game does.
4. Transfer: PPO trained only in the dream (``training.agents.sb3``, ``--ppo-steps``) against a random
   agent, ``--episodes`` real games each. Breakout: PPO's mean beats random's by more than 3 points;
   Pong: more points won per game (21 + the score of a lost game, 21 for a won one).
Writes ``OUT/gates.json`` (kept in the shipped file's provenance by ``training.ship``), whose ``passed``
holds only when every gate measured passed and ``failed`` names the others, and prints a markdown row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from gym_diamond import WorldModel, load_checkpoint
from gym_diamond.envs.rew_end_reading import DEFAULT_WINDOW
from training.agents.evaluate import REAL_EPISODE_CAP, against_random
from training.agents.sb3 import train_sb3_agent
from training.data.collect import read_collection_log
from training.data.dataset import EpisodeDataset
from training.data.games import rules
from training.fidelity.closed_loop import closed_loop_report
from training.fidelity.episode_reads import dream_reading_confusion
from training.fidelity.held_out import held_out_episodes
from training.fidelity.measures import FIDELITY_HORIZONS, dream_event_starts, event_confusion, game_objects
from training.fidelity.open_loop import dream_event_confusion, fidelity_lines
from training.runtime.cli import add_algo_kwargs_argument, user_errors
from training.runtime.files import write_json_atomic

EVENT_THRESHOLD = 0.8  # least recall and precision of rewards and terminations
EVENT_SEQUENCE_LENGTH = 19  # transitions the reward/termination LSTM reads in a row (DIAMOND's training sequences)
BALL_SHOWN_THRESHOLD = 0.9  # least share of the real frames with a ball where the dream shows one
HORIZONS = FIDELITY_HORIZONS
PSNR_HORIZONS = (1, 5)  # where pooled PSNR must beat repeat-last (at 15 steps both have drifted far)


def judged_objects(game: str) -> tuple[str, ...]:
    """The objects a dream must keep: the ball in Pong and Breakout (the paddle is reported beside), both boxers
    in Boxing; none in a game without a detector."""
    things = game_objects(game)
    return ("ball",) if "ball" in things else things


def object_figures(line: dict[str, Any], game: str) -> dict[str, Any]:
    """The object agreement figures of one fidelity line (``training.fidelity.measures.game_objects``)."""
    return {k: v for k, v in line.items() if k.startswith(tuple(f"{thing}_" for thing in game_objects(game)))}


def judge_psnr(by_horizon: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Pooled PSNR of the dream beats repeat-last at 1 and 5 steps."""
    failed = [f"pooled PSNR at {h} steps: {by_horizon[h]['pooled_psnr_model']} dB, repeat-last "
              f"{by_horizon[h]['pooled_psnr_repeat_last']}" for h in PSNR_HORIZONS
              if not by_horizon[h]["pooled_psnr_model"] > by_horizon[h]["pooled_psnr_repeat_last"]]
    return {"passed": not failed, "failed": failed}


def judge_objects(by_horizon: dict[int, dict[str, Any]], min_shown: float = BALL_SHOWN_THRESHOLD,
                  objects: tuple[str, ...] = ("ball",)) -> dict[str, Any]:
    """At every horizon the dream shows each of ``objects`` (the ball; Boxing's boxers) in ``min_shown`` of the
    real frames that show it, and puts it within 2 pixels of the real one more often than repeat-last does (or
    always: where nothing moves, repeat-last cannot be beaten)."""
    failed = []
    for h, line in by_horizon.items():
        for thing in objects:
            if not line.get(f"{thing}_real"):
                failed.append(f"{h} steps: no real frame with a {thing} to judge")
                continue
            shown, within, within_last = (line[f"{thing}_{k}"] for k in ("shown_model", "within_2px_model",
                                                                         "within_2px_repeat_last"))
            if shown < min_shown:
                failed.append(f"{h} steps: {thing} shown in {shown:.2f} of {line[f'{thing}_real']} real frames "
                              f"with one (needs {min_shown})")
            if not (within > within_last or within == 1.0):  # a boxer standing still: repeat-last is right too
                failed.append(f"{h} steps: {thing} within 2 px in {within:.2f}, repeat-last {within_last:.2f}")
    return {"passed": not failed, "failed": failed, "min_shown": min_shown, "objects": list(objects)}


def judge_events(report: dict[str, Any], threshold: float = EVENT_THRESHOLD) -> dict[str, Any]:
    """Recall and precision of reward signs and terminations at least ``threshold`` each."""
    names = ("reward_recall", "reward_precision", "termination_recall", "termination_precision")
    failed = [f"{name} {report[name]}" + (" (no event to judge)" if report[name] is None else f" < {threshold}")
              for name in names if report[name] is None or report[name] < threshold]
    return {**report, "passed": not failed, "failed": failed}


def transfer(checkpoint: str, game: str, out: Path, ppo_steps: int, episodes: int, num_envs: int, seed: int,
             ppo_kwargs: dict[str, Any], frame_stack: int = 1, max_steps: int = REAL_EPISODE_CAP) -> dict[str, Any]:
    start = time.perf_counter()
    run = train_sb3_agent(checkpoint, algo="ppo", steps=ppo_steps, out=out / "ppo", num_envs=num_envs,
                          frame_stack=frame_stack, algo_kwargs=ppo_kwargs, eval_episodes=0, seed=seed, progress=True)
    ppo_seconds = time.perf_counter() - start
    scores = against_random(run.model, frame_stack, game, len(load_checkpoint(checkpoint).action_meanings), episodes,
                            seed, max_steps)
    passed = scores["ppo"] > scores["random"] + rules(game).transfer_margin
    return {"ppo_steps": ppo_steps, "ppo_train_seconds": round(ppo_seconds, 1), "ppo_kwargs": ppo_kwargs,
            "frame_stack": frame_stack, "num_envs": num_envs, **scores, "passed": bool(passed)}


def fidelity_gates(model: WorldModel, dataset: EpisodeDataset, test_ids: np.ndarray, samples: int,
                   seed: int) -> dict[str, Any]:
    """PSNR and object gates of the open-loop dream with the model's current sampler."""
    lines = fidelity_lines(model, dataset, test_ids, list(HORIZONS), samples, seed=seed)
    by_horizon = {line["horizon"]: line for line in lines}
    fidelity: dict[str, Any] = {
        "psnr": {h: by_horizon[h]["pooled_psnr_model"] for h in by_horizon},
        "psnr_repeat_last": {h: by_horizon[h]["pooled_psnr_repeat_last"] for h in by_horizon},
        "mean_of_psnrs": {h: by_horizon[h]["psnr_model"] for h in by_horizon},
        "mean_of_psnrs_repeat_last": {h: by_horizon[h]["psnr_repeat_last"] for h in by_horizon},
        "psnr_gate": judge_psnr(by_horizon)}
    if dataset.game and judged_objects(dataset.game):  # a game with an object detector
        fidelity["objects"] = {h: object_figures(line, dataset.game) for h, line in by_horizon.items()}
        fidelity["objects_gate"] = judge_objects(by_horizon, objects=judged_objects(dataset.game))
    fidelity["passed"] = all(fidelity[g]["passed"] for g in ("psnr_gate", "objects_gate") if g in fidelity)
    return fidelity


def failed_gates(gates: dict[str, Any]) -> list[str]:
    """Every failure the measured gates report, each prefixed with its gate."""
    failed = []
    for name, fidelity in gates["fidelity"].items():
        for gate in ("psnr_gate", "objects_gate"):
            failed += [f"{name} {gate}: {why}" for why in fidelity.get(gate, {}).get("failed", [])]
    for name in ("events", "whole_episode_events", "dream_events"):
        failed += [f"{name}: {why}" for why in gates.get(name, {}).get("failed", [])]
    failed += [f"closed_loop: {why['reason']}" for why in gates.get("closed_loop", {}).get("failures", [])]
    if "transfer" in gates and not gates["transfer"]["passed"]:
        t = gates["transfer"]
        failed.append(f"transfer: PPO {t['ppo']} against random {t['random']} ({t['measure']})")
    return failed


TABLE_HEADER = ("| game | pooled PSNR 1 / 5 / 15 | repeat-last | objects shown, within 2 px at 1 / 5 / 15 | "
                "reward R / P, end R / P (real frames) | (dream frames) | closed loop | PPO vs random | all gates |")


def table_row(gates: dict[str, Any]) -> str:
    """One markdown row (under ``TABLE_HEADER``): PSNR, each object of the game shown / within 2 px, events on real
    and dream frames, closed loop, transfer."""
    fidelity = next(iter(gates["fidelity"].values()))
    psnr, last = fidelity["psnr"], fidelity["psnr_repeat_last"]
    objects = fidelity.get("objects")
    shown = "-" if objects is None else "; ".join(
        f"{name} " + " / ".join(f"{objects[h][f'{name}_shown_model']}, {objects[h][f'{name}_within_2px_model']}"
                                for h in HORIZONS)
        for name in fidelity["objects_gate"]["objects"])

    def events(report: dict[str, Any] | None) -> str:
        if report is None:
            return "-"
        return (f"{report['reward_recall']} / {report['reward_precision']}, "
                f"{report['termination_recall']} / {report['termination_precision']}")

    loop = gates.get("closed_loop")
    t = gates.get("transfer")
    whole = "" if gates.get("whole_episode_events") is None else \
        f" (whole episodes {events(gates['whole_episode_events'])})"
    return (f"| {gates['game']} | {psnr[1]} / {psnr[5]} / {psnr[15]} | {last[1]} / {last[5]} / {last[15]} | {shown} | "
            f"{events(gates['events'])}{whole} | {events(gates.get('dream_events'))} | "
            f"{'-' if loop is None else ('passed' if loop['passed'] else 'failed')} | "
            f"{'-' if t is None else str(t['ppo']) + ' vs ' + str(t['random'])} | "
            f"{'passed' if gates['passed'] else 'failed'} |")


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", help="the dataset the model was trained on: its held-out split is judged")
    parser.add_argument("--test-fraction", type=float, help="with --data: the fraction training held out")
    parser.add_argument("--test-data", help="instead of --data: a dataset collected apart and never trained on (more "
                                            "events to judge); all its episodes are judged")
    parser.add_argument("--out", required=True, help="folder for gates.json and the PPO run")
    parser.add_argument("--samples", type=int, default=256, help="open-loop segments per sampler")
    parser.add_argument("--denoising-steps", type=int, nargs="+", default=None,
                        help="samplers to measure (default: the checkpoint's); the events on dream frames and the "
                             "closed loop use the first")
    parser.add_argument("--dream-event-steps", type=int, default=20_000,
                        help="judge the events on dream frames over the held-out episodes in order until this many "
                             "transitions, and the last 19 of every other one, where it ends (0: skip; each "
                             "transition costs one imagined step)")
    parser.add_argument("--closed-loop-steps", type=int, default=20_000,
                        help="agent steps per policy in the dream and in the real game (0: skip); fewer leave the "
                             "rates to chance (Pong's points won: about 1 per 1,000 steps)")
    parser.add_argument("--closed-loop-envs", type=int, default=8)
    parser.add_argument("--ppo-steps", type=int, default=100_000, help="PPO env steps in the dream (0: skip)")
    add_algo_kwargs_argument(parser, "PPO")
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--frame-stack", type=int, default=1, help="frames the PPO agent sees (VecFrameStack)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=REAL_EPISODE_CAP,
                        help="cut a real game after this many agent steps (27,000: 30 minutes of play, the usual cap)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (args.test_data is None) == (args.data is None) or (args.data is not None) != (args.test_fraction is not None):
        parser.error("give --data with --test-fraction (the training split), or --test-data (a dataset apart)")
    for name in ("samples", "dream_event_steps", "closed_loop_steps", "ppo_steps"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(args.checkpoint)
    model, game = ckpt.world_model.eval(), ckpt.game
    if args.test_data is not None:
        dataset = EpisodeDataset(args.test_data, game=game)
        test_ids = np.arange(len(dataset))
        held_out = {"data": str(args.test_data), "how": "collected apart",
                    "collection": read_collection_log(args.test_data)}
    else:
        dataset = EpisodeDataset(args.data, game=game)
        test_ids = held_out_episodes(dataset, ckpt.provenance, args.test_fraction)  # never the run's trained ones
        held_out = {"data": str(args.data), "how": f"split, test_fraction {args.test_fraction}"}
    gates: dict[str, Any] = {"checkpoint": str(args.checkpoint), "game": game, "held_out_episodes": len(test_ids),
                             "held_out": {**held_out, "episodes": len(test_ids),
                                          "steps": int(dataset.lengths[test_ids].sum())}, "fidelity": {}}
    samplers = args.denoising_steps or [model.config.sampler.num_steps]
    for steps in samplers:
        model.config = model.config.with_denoising_steps(steps)
        fidelity = gates["fidelity"][f"{steps}_denoising_steps"] = fidelity_gates(model, dataset, test_ids,
                                                                                  args.samples, args.seed)
        print(json.dumps({"denoising_steps": steps, **fidelity}), flush=True)
    gates["events"] = judge_events(event_confusion(model, dataset, test_ids).to_dict())
    print(json.dumps({"events": gates["events"]}), flush=True)
    gates["whole_episode_events"] = {**judge_events(dream_reading_confusion(model, dataset, test_ids).to_dict()),
                                     "rew_end_window": DEFAULT_WINDOW}
    print(json.dumps({"whole_episode_events": gates["whole_episode_events"]}), flush=True)
    model.config = model.config.with_denoising_steps(samplers[0])
    if args.dream_event_steps:
        starts, whole = dream_event_starts(dataset, test_ids, args.dream_event_steps, EVENT_SEQUENCE_LENGTH)
        report = dream_event_confusion(model, dataset, test_ids, seed=args.seed, starts=starts,
                                       sequence_length=EVENT_SEQUENCE_LENGTH).to_dict()
        gates["dream_events"] = {**judge_events(report), "denoising_steps": samplers[0], "episodes": whole,
                                 "episode_ends": len(test_ids) - whole}
        print(json.dumps({"dream_events": gates["dream_events"]}), flush=True)
    if args.closed_loop_steps:
        gates["closed_loop"] = closed_loop_report(args.checkpoint, game, steps=args.closed_loop_steps,
                                                  num_envs=args.closed_loop_envs, seed=args.seed,
                                                  denoising_steps=samplers[0], progress=True)
        print(json.dumps({"closed_loop": gates["closed_loop"]}), flush=True)
    if args.ppo_steps:
        gates["transfer"] = transfer(args.checkpoint, game, out, args.ppo_steps, args.episodes, args.num_envs,
                                     args.seed, args.algo_kwargs, args.frame_stack,
                                     args.max_steps)
        print(json.dumps({"transfer": gates["transfer"]}), flush=True)
    gates["failed"] = failed_gates(gates)
    gates["passed"] = not gates["failed"]
    write_json_atomic(out / "gates.json", gates)  # whole or absent: training.ship reads it
    print(TABLE_HEADER)
    print(table_row(gates))


if __name__ == "__main__":
    main()
