"""Judge an agent in the real game with the Atari 100k test protocol, and human-normalise its score.

Test protocol (the DIAMOND paper's, as its test collector plays: ``config/env/atari.yaml`` test env without
life-loss termination): full episodes to game over, the raw game score, HNS = (agent - random) /
(human - random).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from gym_diamond.atari import game_to_name, make_atari_env
from training.agents import Agent

# Random and human scores of the 26 Atari 100k games, as used by the Atari 100k literature (SimPLe,
# IRIS, DIAMOND); they come from Mnih et al. 2015 (Nature, "Human-level control through deep RL")
# and Wang et al. 2016 / Badia et al. 2020 (Agent57), whose tables agree on these 26 games.
RANDOM_HUMAN_SCORES: dict[str, tuple[float, float]] = {
    "Alien": (227.8, 7127.7), "Amidar": (5.8, 1719.5), "Assault": (222.4, 742.0), "Asterix": (210.0, 8503.3),
    "BankHeist": (14.2, 753.1), "BattleZone": (2360.0, 37187.5), "Boxing": (0.1, 12.1), "Breakout": (1.7, 30.5),
    "ChopperCommand": (811.0, 7387.8), "CrazyClimber": (10780.5, 35829.4), "DemonAttack": (152.1, 1971.0),
    "Freeway": (0.0, 29.6), "Frostbite": (65.2, 4334.7), "Gopher": (257.6, 2412.5), "Hero": (1027.0, 30826.4),
    "Jamesbond": (29.0, 302.8), "Kangaroo": (52.0, 3035.0), "Krull": (1598.0, 2665.5),
    "KungFuMaster": (258.5, 22736.3), "MsPacman": (307.3, 6951.6), "Pong": (-20.7, 14.6),
    "PrivateEye": (24.9, 69571.3), "Qbert": (163.9, 13455.0), "RoadRunner": (11.5, 7845.0),
    "Seaquest": (68.4, 42054.7), "UpNDown": (533.4, 11693.2),
}


def human_normalized_score(game: str, score: float) -> float:
    """(score - random) / (human - random) for one of the 26 Atari 100k games."""
    name = game_to_name(game)
    if name not in RANDOM_HUMAN_SCORES:
        raise ValueError(f"no published random/human scores for {name}: HNS is defined for the 26 Atari 100k "
                         f"games {sorted(RANDOM_HUMAN_SCORES)}")
    random, human = RANDOM_HUMAN_SCORES[name]
    return (score - random) / (human - random)


@dataclass
class Evaluation:
    game: str
    returns: list[float]
    lengths: list[int]
    mean: float
    std: float
    hns: float | None  # None for games outside the Atari 100k set

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for report.json)."""
        return asdict(self)


def evaluate(agent: Agent, game: str, episodes: int, *, num_envs: int = 8, seed: int = 0,
             max_steps: int = 27_000, progress: bool = False) -> Evaluation:
    """Play ``episodes`` full real-game episodes with ``num_envs`` games side by side.

    ``max_steps`` cuts an episode after that many agent steps (27,000 = 108,000 frames, the usual
    Atari cap) so that a stuck agent cannot hang evaluation; the agent must be built for ``num_envs``
    environments.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    name = game_to_name(game)
    num_envs = min(num_envs, episodes)
    envs = [make_atari_env(name) for _ in range(num_envs)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    started = num_envs
    agent.reset(np.ones(num_envs, dtype=bool))
    running = np.zeros(num_envs)
    steps = np.zeros(num_envs, dtype=int)
    active = np.ones(num_envs, dtype=bool)
    returns: list[float] = []
    lengths: list[int] = []
    bar = tqdm(total=episodes, desc=f"evaluate {name} (real game)", unit="episode", disable=not progress)
    vector_steps = 0
    while active.any():
        vector_steps += 1
        if vector_steps % 100 == 0:  # episodes can last thousands of steps: show the steps too
            bar.set_postfix(steps=int(steps.sum() + sum(lengths)))
        actions = agent.act(obs)
        new_episode = np.zeros(num_envs, dtype=bool)
        for i in np.flatnonzero(active):  # real games step one by one; only the agent is batched
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            running[i] += reward
            steps[i] += 1
            if terminated or truncated or steps[i] >= max_steps:
                returns.append(float(running[i]))
                lengths.append(int(steps[i]))
                bar.update(1)
                running[i], steps[i] = 0.0, 0
                if started < episodes:
                    obs[i] = envs[i].reset(seed=seed + started)[0]
                    started += 1
                    new_episode[i] = True
                else:
                    active[i] = False
        if new_episode.any():
            agent.reset(new_episode)
    bar.close()
    for env in envs:
        env.close()
    mean = float(np.mean(returns))
    hns = human_normalized_score(name, mean) if name in RANDOM_HUMAN_SCORES else None
    return Evaluation(name, returns, lengths, mean, float(np.std(returns)), hns)


def main(argv: list[str] | None = None) -> None:
    """``python -m training.evaluate --game Pong --actor-critic A.safetensors``: score an actor-critic."""
    import argparse
    import json

    from training.agent_io import load_actor_critic
    from training.agents import ActorCriticAgent

    parser = argparse.ArgumentParser(description="Score a DIAMOND actor-critic in the real game (Atari 100k test "
                                                 "protocol: full episodes, raw score, HNS).")
    parser.add_argument("--game", required=True)
    parser.add_argument("--actor-critic", required=True, help="an actor-critic .safetensors")
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--envs", type=int, default=8, help="games played side by side")
    parser.add_argument("--epsilon", type=float, default=0.0, help="chance of a random action")
    parser.add_argument("--greedy", action="store_true", help="the policy's argmax instead of a sample")
    parser.add_argument("--max-steps", type=int, default=27_000, help="agent steps before an episode is cut")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    num_envs = min(args.envs, args.episodes)
    agent = ActorCriticAgent(load_actor_critic(args.actor_critic, args.device), num_envs, epsilon=args.epsilon,
                             greedy=args.greedy, seed=args.seed)
    result = evaluate(agent, args.game, args.episodes, num_envs=num_envs, seed=args.seed, max_steps=args.max_steps,
                      progress=True)
    print(json.dumps(result.to_dict()))
    hns = "" if result.hns is None else f", HNS {result.hns:.3f}"
    print(f"{result.game}: {result.mean:.1f} +- {result.std:.1f} over {len(result.returns)} episodes{hns}")


if __name__ == "__main__":
    main()
