"""Judge an agent in the real game with the Atari 100k test protocol, and human-normalise its score.

Test protocol (the DIAMOND paper's, as its test collector plays: ``config/env/atari.yaml`` test env without
life-loss termination): full episodes to game over, the raw game score, HNS = (agent - random) /
(human - random).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from gym_diamond import resolve_device
from gym_diamond.atari import game_to_name
from gym_diamond.errors import UserError
from training.data.environments import RealEnvironment, add_environment_arguments, environment_from_arguments
from training.data.games import rules
from training.data.policies import Agent, RandomAgent, SB3Agent
from training.runtime.cli import add_device_argument, user_errors
from training.runtime.progress import progress_bar

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


def bootstrap_interval(values: list[float] | np.ndarray, confidence: float = 0.95, resamples: int = 10_000,
                       seed: int = 0) -> tuple[float, float]:
    """The percentile bootstrap interval of the mean of ``values`` (Efron 1979): resample the episodes with
    replacement ``resamples`` times and take the middle ``confidence`` of the resampled means.

    Episode returns are few and rarely normal (Pong's lie on a grid from -21 to 21), which a
    mean +- 1.96 standard errors ignores; the bootstrap makes no such assumption. Seeded, so a table
    is reproducible.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0:
        raise UserError(f"bootstrap_interval needs a non-empty 1-D sample, got shape {values.shape}")
    if not 0 < confidence < 1:
        raise UserError(f"confidence must lie in (0, 1), got {confidence}")
    if resamples < 1:
        raise UserError(f"resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def human_normalized_score(game: str, score: float) -> float:
    """(score - random) / (human - random) for one of the 26 Atari 100k games."""
    name = game_to_name(game)
    if name not in RANDOM_HUMAN_SCORES:
        raise UserError(f"no published random/human scores for {name}: HNS is defined for the 26 Atari 100k "
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
    interval: tuple[float, float]  # 95% percentile bootstrap interval of the mean (``bootstrap_interval``)
    reward_signs: list[int]  # per episode: steps with a positive reward minus steps with a negative one

    @property
    def sign_rate(self) -> float:
        """Reward signs per 1,000 steps over all episodes: what a dream's reward model predicts, so a dream's
        rate (``training.agents.rollouts.count_events``) compares with it."""
        return 1000.0 * sum(self.reward_signs) / max(1, sum(self.lengths))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (for report.json)."""
        return asdict(self)


# Agent steps after which a real episode is cut: 108,000 frames at 4 a step, the usual Atari cap (stuck agents
# cannot hang an evaluation)
REAL_EPISODE_CAP = 27_000
# Real-game evaluations play seeds the run's seed + this, apart from the seeds its training played
EVALUATION_SEED_OFFSET = 10_000


def evaluate(agent: Agent, environment: RealEnvironment | str, episodes: int, *, num_envs: int = 8, seed: int = 0,
             max_steps: int = REAL_EPISODE_CAP, progress: bool = False) -> Evaluation:
    """Play ``episodes`` full real episodes of ``environment`` (an Atari game's name, or any ``RealEnvironment``)
    with ``num_envs`` environments side by side.

    ``max_steps`` cuts an episode after that many agent steps (27,000 = 108,000 frames, the usual
    Atari cap) so that a stuck agent cannot hang evaluation; the agent must be built for ``num_envs``
    environments.
    """
    if episodes < 1:
        raise UserError(f"episodes must be >= 1, got {episodes}")
    environment = environment if isinstance(environment, RealEnvironment) else RealEnvironment(game=environment)
    name = environment.name
    num_envs = min(num_envs, episodes)
    envs = [environment.eval_env() for _ in range(num_envs)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    started = num_envs
    agent.reset(np.ones(num_envs, dtype=bool))
    running = np.zeros(num_envs)
    signs = np.zeros(num_envs, dtype=int)
    steps = np.zeros(num_envs, dtype=int)
    active = np.ones(num_envs, dtype=bool)
    returns: list[float] = []
    lengths: list[int] = []
    reward_signs: list[int] = []
    bar = progress_bar(total=episodes, desc=f"evaluate {name} (real game)", unit="episode", disable=not progress)
    vector_steps = 0
    while active.any():
        vector_steps += 1
        if vector_steps % 100 == 0:  # episodes can last thousands of steps: show the steps too
            bar.set_postfix(steps=int(steps.sum() + sum(lengths)), refresh=False)
        actions = agent.act(obs)
        new_episode = np.zeros(num_envs, dtype=bool)
        for i in np.flatnonzero(active):  # real games step one by one; only the agent is batched
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            running[i] += reward
            signs[i] += int(np.sign(reward))
            steps[i] += 1
            if terminated or truncated or steps[i] >= max_steps:
                returns.append(float(running[i]))
                lengths.append(int(steps[i]))
                reward_signs.append(int(signs[i]))
                bar.update(1)
                running[i], steps[i], signs[i] = 0.0, 0, 0
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
    hns = human_normalized_score(name, mean) if environment.is_atari and name in RANDOM_HUMAN_SCORES else None
    return Evaluation(name, returns, lengths, mean, float(np.std(returns)), hns, bootstrap_interval(returns, seed=seed),
                      reward_signs)


def against_random(model: Any, frame_stack: int, game: str, num_actions: int, episodes: int, seed: int,
                   max_steps: int) -> dict[str, Any]:
    """The trained PPO agent and a random one, each over the same ``episodes`` real games, in the gate's measure."""
    seeds = seed + EVALUATION_SEED_OFFSET
    ppo = evaluate(SB3Agent(model, frame_stack=frame_stack), game, episodes, seed=seeds, max_steps=max_steps,
                   progress=True)
    random = evaluate(RandomAgent(num_actions, seed=seed), game, episodes, seed=seeds, max_steps=max_steps,
                      progress=True)
    game_rules = rules(game)  # Pong: points won per game
    ppo_score, random_score = (float(np.mean(game_rules.points(e.returns))) for e in (ppo, random))
    return {"episodes": episodes, "max_steps": max_steps, "measure": game_rules.measure,
            "ppo": round(ppo_score, 2), "random": round(random_score, 2), "ppo_returns": ppo.returns,
            "random_returns": random.returns}


def load_agent(spec: str, environment: RealEnvironment | str, num_envs: int, *, seed: int = 0, device: str = "cpu",
               epsilon: float = 0.0, greedy: bool = False) -> Agent:
    """An agent from a command-line spec: ``random``, ``actor-critic:PATH`` (a saved DIAMOND actor-critic) or
    ``sb3:FOLDER`` (a ``training.agents.sb3`` run folder: its ``model.zip`` and ``policy.json``)."""
    kind, _, path = spec.partition(":")
    if kind == "random" and not path:
        environment = environment if isinstance(environment, RealEnvironment) else RealEnvironment(game=environment)
        return RandomAgent(len(environment.action_meanings()), seed=seed)
    if kind == "actor-critic" and path:
        from training.agents.checkpoints import load_actor_critic
        from training.data.policies import ActorCriticAgent

        return ActorCriticAgent(load_actor_critic(path, device), num_envs, epsilon=epsilon, greedy=greedy, seed=seed)
    if kind == "sb3" and path:
        import json
        from pathlib import Path

        from training.agents.sb3_algorithms import algorithm_class
        from training.data.policies import SB3Agent

        folder = Path(path)
        if not (folder / "policy.json").is_file() or not (folder / "model.zip").is_file():
            raise FileNotFoundError(f"{folder} is not a training.agents.sb3 run folder (model.zip and policy.json)")
        meta = json.loads((folder / "policy.json").read_text())
        model = algorithm_class(meta["algo"]).load(folder / "model.zip", device=device)
        return SB3Agent(model, deterministic=greedy, frame_stack=int(meta.get("frame_stack", 1)))
    raise UserError(f"unknown agent {spec!r}: use random, actor-critic:PATH or sb3:FOLDER")


def compare_to(result: Evaluation, reference: Evaluation) -> str:
    """``above`` or ``below`` when the 95% intervals of the two means do not overlap, else ``overlaps``."""
    if result.interval[0] > reference.interval[1]:
        return "above"
    if result.interval[1] < reference.interval[0]:
        return "below"
    return "overlaps"


def table(results: dict[str, Evaluation]) -> str:
    """A Markdown table of evaluations, each compared with the random agent's when one is among them."""
    random = results.get("random")
    lines = ["| agent | episodes | mean score | 95% interval | HNS | vs random |", "|---|---|---|---|---|---|"]
    for name, r in results.items():
        hns = "-" if r.hns is None else f"{r.hns:.3f}"
        versus = "-" if random is None or name == "random" else compare_to(r, random)
        lines.append(f"| {name} | {len(r.returns)} | {r.mean:.2f} | [{r.interval[0]:.2f}, {r.interval[1]:.2f}] | "
                     f"{hns} | {versus} |")
    return "\n".join(lines)


@user_errors
def main(argv: list[str] | None = None) -> None:
    """``python -m training.agents.evaluate --game Boxing --agent random --agent actor-critic:A.safetensors``."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description="Score agents in the real game (Atari 100k test protocol: full "
                                                 "episodes, raw score, 95%% bootstrap interval, HNS) and tabulate "
                                                 "them against random play.")
    add_environment_arguments(parser)
    parser.add_argument("--agent", action="append", default=[],
                        help="random, actor-critic:PATH or sb3:FOLDER; repeat for a table (played with the same seeds)")
    parser.add_argument("--actor-critic", default=None, help="shorthand for --agent actor-critic:PATH")
    parser.add_argument("--episodes", type=int, default=30)
    parser.add_argument("--num-envs", type=int, default=8, help="games played side by side")
    parser.add_argument("--epsilon", type=float, default=0.0, help="chance of a random action (actor-critics)")
    parser.add_argument("--greedy", action="store_true", help="the policy's argmax instead of a sample")
    parser.add_argument("--max-steps", type=int, default=REAL_EPISODE_CAP, help="agent steps before an episode is cut")
    parser.add_argument("--seed", type=int, default=0)
    add_device_argument(parser)
    parser.add_argument("--out", default=None, help="write every evaluation (all returns) to this JSON file")
    args = parser.parse_args(argv)
    environment = environment_from_arguments(args)
    specs = args.agent + ([f"actor-critic:{args.actor_critic}"] if args.actor_critic else [])
    if not specs:
        parser.error("name at least one agent (--agent or --actor-critic)")
    results: dict[str, Evaluation] = {}
    for spec in dict.fromkeys(specs):
        num_envs = min(args.num_envs, args.episodes)
        agent = load_agent(spec, environment, num_envs, seed=args.seed, device=resolve_device(args.device),
                           epsilon=args.epsilon, greedy=args.greedy)
        result = results[spec] = evaluate(agent, environment, args.episodes, num_envs=num_envs, seed=args.seed,
                                          max_steps=args.max_steps, progress=True)
        print(json.dumps({"agent": spec, **result.to_dict()}))
        hns = "" if result.hns is None else f", HNS {result.hns:.3f}"
        print(f"{result.game}: {result.mean:.1f} +- {result.std:.1f} over {len(result.returns)} episodes{hns} "
              f"({spec})", flush=True)
    if args.out:
        from pathlib import Path

        from training.runtime.files import write_json_atomic

        write_json_atomic(Path(args.out), {spec: r.to_dict() for spec, r in results.items()})
    print(table(results))

if __name__ == "__main__":
    main()
