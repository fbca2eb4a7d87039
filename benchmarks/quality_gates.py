"""The quality gates a world model must pass before it ships, measured in one command.

    python benchmarks/quality_gates.py --checkpoint runs/pong-wm/world_model.safetensors \
        --data runs/pong/data --test-fraction 0.1 --out runs/pong-gates

On held-out real episodes: the split ``training.world_model --test-fraction`` kept out, or
(``--test-data``) a dataset collected apart, which can hold more of the rare events:
1. PSNR of the dream against the real frames at 1, 5 and 15 steps, beside repeat-last-frame; the gate
   is to beat repeat-last at 1 and 5 steps in pooled PSNR (of the mean squared error over all samples;
   the mean of per-sample PSNRs, reported too, credits repeat-last with 106 dB wherever the real frame
   did not change). Measured for each ``--denoising-steps`` given.
2. Reward sign and termination on every held-out transition: recall and precision at least 0.8 each
   (``training.fidelity``; a gate with no event to judge is reported as such, not passed).
3. Transfer: PPO trained only in the dream (``training.sb3_agent``, ``--ppo-steps``) against a random
   agent, ``--episodes`` real games each. Breakout: PPO's mean beats random's by more than 3 points;
   Pong: more points won per game (21 + the score of a lost game, 21 for a won one).
Reported beside the fidelity gate, not yet a gate itself (Pong and Breakout): ball and paddle agreement
at 1, 5 and 15 steps (``training.fidelity.object_agreement``): of the real frames that show the ball, the
share whose dream shows one and the share whose dreamed ball lies within 2 pixels; likewise the paddle;
beside repeat-last.
Writes ``OUT/gates.json`` (kept in the shipped file's provenance by ``training.ship``) and prints a
markdown table row.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from world_model_fidelity import fidelity_lines  # this folder's fidelity measure (run as a script from here)

from gym_diamond import load_checkpoint
from training.agents import RandomAgent, SB3Agent
from training.collect import read_collection_log
from training.dataset import EpisodeDataset
from training.evaluate import evaluate
from training.fidelity import event_confusion
from training.sb3_agent import train_sb3_agent

EVENT_THRESHOLD = 0.8


def object_figures(line: dict[str, Any]) -> dict[str, Any]:
    """The ball and paddle agreement figures of one fidelity line."""
    return {k: v for k, v in line.items() if k.startswith(("ball_", "paddle_"))}


def points_won(game: str, returns: list[float]) -> list[float]:
    """Pong: points the agent scored in each game (a game ends when a side reaches 21)."""
    return [21.0 if r > 0 else 21.0 + r for r in returns] if game == "Pong" else list(returns)


def against_random(model: BaseAlgorithm, frame_stack: int, game: str, num_actions: int, episodes: int, seed: int,
                   max_steps: int) -> dict[str, Any]:
    """The trained PPO agent and a random one, each over the same ``episodes`` real games, in the gate's measure."""
    ppo = evaluate(SB3Agent(model, frame_stack=frame_stack), game, episodes, seed=seed + 10_000, max_steps=max_steps,
                   progress=True)
    random = evaluate(RandomAgent(num_actions, seed=seed), game, episodes, seed=seed + 10_000, max_steps=max_steps,
                      progress=True)
    ppo_score, random_score = (float(np.mean(points_won(game, e.returns))) for e in (ppo, random))
    return {"episodes": episodes, "max_steps": max_steps,
            "measure": "points won per game" if game == "Pong" else "mean return",
            "ppo": round(ppo_score, 2), "random": round(random_score, 2), "ppo_returns": ppo.returns,
            "random_returns": random.returns}


def transfer(checkpoint: str, game: str, out: Path, ppo_steps: int, episodes: int, num_envs: int, seed: int,
             ppo_kwargs: dict[str, Any], frame_stack: int = 1, max_steps: int = 27_000) -> dict[str, Any]:
    start = time.perf_counter()
    run = train_sb3_agent(checkpoint, algo="ppo", steps=ppo_steps, out=out / "ppo", num_envs=num_envs,
                          frame_stack=frame_stack, algo_kwargs=ppo_kwargs, eval_episodes=0, seed=seed, progress=True)
    ppo_seconds = time.perf_counter() - start
    scores = against_random(run.model, frame_stack, game, len(load_checkpoint(checkpoint).action_meanings), episodes,
                            seed, max_steps)
    passed = scores["ppo"] > scores["random"] + 3 if game == "Breakout" else scores["ppo"] > scores["random"]
    return {"ppo_steps": ppo_steps, "ppo_train_seconds": round(ppo_seconds, 1), "ppo_kwargs": ppo_kwargs,
            "frame_stack": frame_stack, "num_envs": num_envs, **scores, "passed": bool(passed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", help="the dataset the model was trained on: its held-out split is judged")
    parser.add_argument("--test-fraction", type=float, help="with --data: the fraction training held out")
    parser.add_argument("--test-data", help="instead of --data: a dataset collected apart and never trained on (more "
                                            "events to judge); all its episodes are judged")
    parser.add_argument("--out", required=True, help="folder for gates.json and the PPO run")
    parser.add_argument("--samples", type=int, default=256)
    parser.add_argument("--denoising-steps", type=int, nargs="+", default=None,
                        help="samplers to measure fidelity with (default: the checkpoint's)")
    parser.add_argument("--ppo-steps", type=int, default=100_000, help="PPO env steps in the dream (0: skip)")
    parser.add_argument("--ppo-kwargs", default="{}", help='JSON for the PPO constructor, e.g. \'{"n_steps": 128}\'')
    parser.add_argument("--num-envs", type=int, default=8)
    parser.add_argument("--frame-stack", type=int, default=1, help="frames the PPO agent sees (VecFrameStack)")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--max-steps", type=int, default=27_000,
                        help="cut a real game after this many agent steps (27,000: 30 minutes of play, the usual cap)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if (args.test_data is None) == (args.data is None) or (args.data is not None) != (args.test_fraction is not None):
        parser.error("give --data with --test-fraction (the training split), or --test-data (a dataset apart)")

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
        _, test_ids = dataset.split(args.test_fraction, seed=0)
        held_out = {"data": str(args.data), "how": f"split, test_fraction {args.test_fraction}"}
    gates: dict[str, Any] = {"checkpoint": str(args.checkpoint), "game": game, "held_out_episodes": len(test_ids),
                             "held_out": {**held_out, "episodes": len(test_ids),
                                          "steps": int(dataset.lengths[test_ids].sum())}, "fidelity": {}}
    for steps in args.denoising_steps or [model.config.sampler.num_steps]:
        model.config = model.config.with_denoising_steps(steps)
        lines = fidelity_lines(model, dataset, test_ids, [1, 5, 15], args.samples, seed=args.seed)
        by_horizon = {line["horizon"]: line for line in lines}
        fidelity = gates["fidelity"][f"{steps}_denoising_steps"] = {
            "psnr": {h: by_horizon[h]["pooled_psnr_model"] for h in by_horizon},
            "psnr_repeat_last": {h: by_horizon[h]["pooled_psnr_repeat_last"] for h in by_horizon},
            "mean_of_psnrs": {h: by_horizon[h]["psnr_model"] for h in by_horizon},
            "mean_of_psnrs_repeat_last": {h: by_horizon[h]["psnr_repeat_last"] for h in by_horizon},
            "passed": all(by_horizon[h]["pooled_psnr_model"] > by_horizon[h]["pooled_psnr_repeat_last"]
                          for h in (1, 5))}
        if "ball_real" in by_horizon[1]:  # a game training.objects reads: reported, not gated
            fidelity["objects"] = {h: object_figures(line) for h, line in by_horizon.items()}
        print(json.dumps({"denoising_steps": steps, **fidelity}), flush=True)
    events = event_confusion(model, dataset, test_ids).to_dict()
    figures = [events[k] for k in ("reward_recall", "reward_precision", "termination_recall", "termination_precision")]
    events["passed"] = all(f is not None and f >= EVENT_THRESHOLD for f in figures)
    gates["events"] = events
    print(json.dumps({"events": events}), flush=True)
    if args.ppo_steps:
        gates["transfer"] = transfer(args.checkpoint, game, out, args.ppo_steps, args.episodes, args.num_envs,
                                     args.seed, json.loads(args.ppo_kwargs), args.frame_stack,
                                     args.max_steps)
        print(json.dumps({"transfer": gates["transfer"]}), flush=True)
    (out / "gates.json").write_text(json.dumps(gates, indent=2))
    fidelity = next(iter(gates["fidelity"].values()))
    psnr, last = fidelity["psnr"], fidelity["psnr_repeat_last"]
    t = gates.get("transfer")
    transfer_cell = "-" if t is None else f"{t['ppo']} vs {t['random']}"
    print(f"| {game} | {psnr[1]} / {psnr[5]} / {psnr[15]} | {last[1]} / {last[5]} / {last[15]} | "
          f"{events['reward_recall']} / {events['reward_precision']} | "
          f"{events['termination_recall']} / {events['termination_precision']} | {transfer_cell} |")

if __name__ == "__main__":
    main()
