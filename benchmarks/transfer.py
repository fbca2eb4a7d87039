"""Transfer: does an agent trained only in a dream play the real environment better than random, and than the same
agent trained on the real steps the dream was learnt from?

    python benchmarks/transfer.py --env-id minigrid:MiniGrid-Empty-6x6-v0 \\
        --wrapper minigrid.wrappers:RGBImgObsWrapper --preset cpu --out runs/transfer-empty6 [--seed 1]

Three agents, each judged over ``--episodes`` real episodes on the same seeds (mean return and success rate, each
with its 95% bootstrap interval):

1. DIAMOND's actor-critic (or ``--agent ppo``, any stable-baselines3 algorithm) trained only in the dream:
   ``training.pipeline`` with ``--preset`` (collection, world model, the agent in the dream), in ``OUT/dream``;
2. uniform random play;
3. the control: the same agent (size, loss, batch; an SB3 algorithm with the same settings and as many environments
   as the dream's batch) trained on the real environment itself (``training.agents.dream_actor_critic --train-in
   real``) for as many real steps as the pipeline collected, in ``OUT/real``: what the dream bought, the
   sample-efficiency claim of world models.

To trace a failure to the dream or to the agent, each of the first two policies also plays the dream on its own
frames (closed loop, no time limit) and its reward signs per 1,000 steps there are set beside the real rate: a
dream whose rate differs from the real one for the same policy rewards what the real environment does not.
Every stage resumes when the command is run again. Writes ``OUT/transfer.json`` and ``OUT/learning_curve.png``
(the dream agent's real return against real steps, as the pipeline judged it every ``eval_every`` epochs), and
prints a Markdown table row per agent.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gym_diamond import load_checkpoint
from training.agents.checkpoints import load_actor_critic
from training.agents.dream_actor_critic import DreamTrainingSettings, train_actor_critic_in_dream
from training.agents.evaluate import EVALUATION_SEED_OFFSET, Evaluation, bootstrap_interval, evaluate
from training.agents.rollouts import count_events, make_dream_env
from training.agents.sb3 import make_real_vec_env
from training.agents.sb3_pipeline_agent import ACTOR_CRITIC, SB3PipelineAgent
from training.agents.sb3_pipeline_agent import MODEL_FILE as SB3_MODEL_FILE
from training.data.environments import RealEnvironment, add_environment_arguments, environment_from_arguments
from training.data.policies import ActorCriticAgent, Agent, RandomAgent, SB3Agent
from training.pipeline import Pipeline
from training.presets import PRESETS, PipelinePreset
from training.runtime.cli import add_algo_kwargs_argument, add_preset_override_argument, user_errors
from training.runtime.files import write_json_atomic

NUM_ENVS = 8


def judged(evaluation: Evaluation, seed: int) -> dict[str, Any]:
    """Mean return and success rate (a positive return) with their 95% bootstrap intervals, and the reward-sign
    rate."""
    successes = [float(r > 0) for r in evaluation.returns]
    return {"mean": evaluation.mean, "ci95": list(evaluation.interval), "success": float(np.mean(successes)),
            "success_ci95": list(bootstrap_interval(successes, seed=seed)), "episodes": len(evaluation.returns),
            "mean_length": float(np.mean(evaluation.lengths)), "real_sign_rate": evaluation.sign_rate}


def dream_sign_rate(checkpoint: Path, agent: Agent, steps: int, seed: int) -> float:
    """Reward signs per 1,000 steps of ``agent`` playing the dream on its own frames (closed loop)."""
    ckpt = load_checkpoint(checkpoint, "cpu")
    env = make_dream_env(ckpt, NUM_ENVS)
    try:
        counts = count_events(env, agent, steps, ckpt.game, seed=seed)
    finally:
        env.close()
    return 1000.0 * (counts.positive_rewards - counts.negative_rewards) / counts.steps


def control_settings(preset: PipelinePreset, real_steps: int, episodes: int, seed: int) -> DreamTrainingSettings:
    """The pipeline's actor-critic and imagination batch, trained on ``real_steps`` real steps (whole updates)."""
    per_update = preset.imagination.batch_size * preset.imagination.backup_every
    return DreamTrainingSettings(updates=max(1, math.ceil(real_steps / per_update)), train_in="real", eval_every=0,
                                 eval_episodes=episodes, dream_eval_steps=0, seed=seed,
                                 channels=preset.actor_critic.channels, lstm_dim=preset.actor_critic.lstm_dim,
                                 imagination=preset.imagination)


def train_sb3_control(environment: RealEnvironment, out: Path, algo: str, algo_kwargs: dict[str, Any],
                      preset: PipelinePreset, real_steps: int, seed: int, device: str) -> SB3PipelineAgent:
    """``algo`` made as the pipeline makes it, on as many real environments as the dream's batch, for at least
    ``real_steps`` real steps (whole rollouts); resumes from ``OUT/real/sb3_model.zip`` (``SB3_MODEL_FILE``)."""
    out.mkdir(parents=True, exist_ok=True)
    agent = SB3PipelineAgent(algo, environment.action_meanings(), preset.imagination, out / SB3_MODEL_FILE,
                             algo_kwargs=algo_kwargs, seed=seed, device=device)
    if agent.steps < real_steps:
        agent.learn_in(make_real_vec_env(environment, preset.imagination.batch_size, seed=seed),
                       real_steps - agent.steps)
        agent.save()
    return agent


AgentMaker = Callable[[int], Agent]  # an agent for a number of environments


def actor_critic_agents(environment: RealEnvironment, out: Path, preset: PipelinePreset, real_steps: int,
                        episodes: int, seed: int, device: str) -> tuple[AgentMaker, AgentMaker, dict[str, int]]:
    """The pipeline's actor-critic and its control, trained here (or resumed), with the control's budget."""
    control = control_settings(preset, real_steps, episodes, seed)
    train_actor_critic_in_dream(None, None, out / "real", control, game=environment, device=device)
    dreamt = load_actor_critic(out / "dream" / "actor_critic.safetensors")
    real = load_actor_critic(out / "real" / "actor_critic.safetensors")
    return (lambda k: ActorCriticAgent(dreamt, k, seed=seed), lambda k: ActorCriticAgent(real, k, seed=seed),
            {"updates": control.updates, "real_steps": control.updates * control.steps_per_update})


def sb3_agents(environment: RealEnvironment, out: Path, algo: str, algo_kwargs: dict[str, Any], preset: PipelinePreset,
               real_steps: int, seed: int, device: str) -> tuple[AgentMaker, AgentMaker, dict[str, int]]:
    """The pipeline's SB3 agent and its control, trained here (or resumed), with the control's budget."""
    dreamt = SB3PipelineAgent(algo, environment.action_meanings(), preset.imagination, out / "dream" / SB3_MODEL_FILE,
                              device=device)
    real = train_sb3_control(environment, out / "real", algo, algo_kwargs, preset, real_steps, seed, device)
    return lambda k: SB3Agent(dreamt.model), lambda k: SB3Agent(real.model), {"real_steps": real.steps}


def draw(out: Path, name: str, report: dict[str, Any], results: dict[str, Any]) -> None:
    """The dream agent's real return at each of the pipeline's evaluations (95% intervals) against its epoch, the
    transfer's own final judgement, random play and the control as bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, colour, label in (("random", "grey", "random"),
                               ("real_control", "red", f"same agent, {results['real_control']['real_steps']} real "
                                                       "steps")):
        low, high = results[key]["ci95"]
        ax.axhspan(low, high, color=colour, alpha=0.15)
        ax.axhline(results[key]["mean"], color=colour, linestyle="--", label=label)
    evaluations = report["evaluations"]
    if evaluations:
        epochs = [e["epoch"] for e in evaluations]
        means = np.array([e["mean"] for e in evaluations])
        bars = np.abs(np.array([e["ci95"] for e in evaluations]).T - means)
        ax.errorbar(epochs, means, yerr=bars, marker="o", capsize=3, label="trained in the dream (as it trains)")
    final = results["dream"]
    ax.errorbar([report["epochs"] + 0.2], [final["mean"]], yerr=np.abs(np.array([final["ci95"]]).T - final["mean"]),
                marker="s", color="black", capsize=3, label=f"trained in the dream, {final['episodes']} episodes")
    ax.axvline(report["collect_epochs"] + 0.5, color="black", linewidth=0.5)
    ax.set_xlabel(f"epoch (real steps collected up to epoch {report['collect_epochs']}: {report['env_steps']})")
    ax.set_ylabel("mean real return [95% CI]")
    ax.set_title(name)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def run_transfer(environment: RealEnvironment, out: Path, preset_name: str, *, seed: int = 0, episodes: int = 30,
                 dream_steps: int = 4000, device: str = "cpu", agent: str = ACTOR_CRITIC,
                 algo_kwargs: dict[str, Any] | None = None, preset_overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The three agents of the module's docstring, judged; resumable stage by stage. ``agent`` is DIAMOND's
    actor-critic or a stable-baselines3 algorithm's name, as ``training.pipeline --agent`` takes it;
    ``preset_overrides`` set fields of the preset as ``training.pipeline --set`` does."""
    pipeline = Pipeline(environment, out / "dream", preset_name, device=device, seed=seed, agent=agent,
                        algo_kwargs=algo_kwargs, preset_overrides=preset_overrides)
    preset = pipeline.preset
    report = pipeline.run()
    real_steps = int(report["env_steps"])
    n = len(environment.action_meanings())
    agents: dict[str, AgentMaker] = {"random": lambda k: RandomAgent(n, seed=seed)}
    if agent == ACTOR_CRITIC:
        agents["dream"], agents["real_control"], control_record = actor_critic_agents(
            environment, out, preset, real_steps, episodes, seed, device)
    else:
        agents["dream"], agents["real_control"], control_record = sb3_agents(
            environment, out, agent, dict(algo_kwargs or {}), preset, real_steps, seed, device)
    eval_seed = seed + EVALUATION_SEED_OFFSET
    results: dict[str, Any] = {}
    world_model = out / "dream" / "world_model.safetensors"
    for name, make in agents.items():
        with torch.no_grad():
            num_envs = min(NUM_ENVS, episodes)
            results[name] = judged(evaluate(make(num_envs), environment, episodes, num_envs=num_envs, seed=eval_seed),
                                   seed)
            if name != "real_control":  # the control never saw the dream
                results[name]["dream_sign_rate"] = dream_sign_rate(world_model, make(NUM_ENVS), dream_steps, seed)
    results["real_control"].update(control_record)
    dream_beats_random = results["dream"]["ci95"][0] > results["random"]["ci95"][1]
    summary = {"environment": environment.describe(), "preset": pipeline.preset_name, "agent": report["agent"],
               "seed": seed, "real_steps": real_steps,
               "world_model_updates": report["world_model_updates"], "actor_critic_updates":
               report["actor_critic_updates"], "imagined_steps": report.get("imagined_steps"),
               "seconds_per_stage": report["seconds_per_stage"],
               "agents": results, "dream_beats_random": dream_beats_random,
               "dream_vs_control": ("above" if results["dream"]["ci95"][0] > results["real_control"]["ci95"][1] else
                                    "below" if results["dream"]["ci95"][1] < results["real_control"]["ci95"][0] else
                                    "not apart")}
    write_json_atomic(out / "transfer.json", summary)
    try:
        draw(out / "learning_curve.png", environment.name, report, results)
    except ModuleNotFoundError:  # matplotlib is an extra; transfer.json holds the same figures
        pass
    return summary


def table(summary: dict[str, Any]) -> str:
    """Markdown rows: agent, mean return [interval], success [interval], real and dream reward-sign rates."""
    rows = []
    agent = summary["agent"]
    names = {"dream": f"{agent}, dream only", "random": "random",
             "real_control": f"{agent}, {summary['agents']['real_control']['real_steps']} real steps"}
    for key, label in names.items():
        r = summary["agents"][key]
        dream = f"{r['dream_sign_rate']:.1f}" if "dream_sign_rate" in r else "-"
        rows.append(f"| {summary['environment'].get('env_id', summary['environment'].get('game'))} | {label} | "
                    f"{r['mean']:.3f} [{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}] | {r['success']:.2f} "
                    f"[{r['success_ci95'][0]:.2f}, {r['success_ci95'][1]:.2f}] | {r['real_sign_rate']:.1f} | {dream} |")
    return "\n".join(rows)


@user_errors
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_environment_arguments(parser)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    add_preset_override_argument(parser)
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=30, help="real episodes per agent")
    parser.add_argument("--dream-steps", type=int, default=4000, help="closed-loop dream steps per policy")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--agent", default=ACTOR_CRITIC,
                        help="DIAMOND's actor-critic (default) or a stable-baselines3 algorithm, e.g. ppo")
    add_algo_kwargs_argument(parser, "the SB3 algorithm")
    args = parser.parse_args(argv)
    try:
        summary = run_transfer(environment_from_arguments(args), Path(args.out), args.preset, seed=args.seed,
                               episodes=args.episodes, dream_steps=args.dream_steps, device=args.device,
                               agent=args.agent, algo_kwargs=args.algo_kwargs,
                               preset_overrides=args.preset_overrides)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: inside a training stage the pipeline saved itself on the way out
        print(f"interrupted: {args.out} holds the runs as they were last saved; run the same command to continue",
              file=sys.stderr)
        raise SystemExit(130) from None
    print("| environment | agent | mean return [95% CI] | success [95% CI] | reward signs / 1k real steps | "
          "/ 1k dream steps |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(table(summary))
    print(f"dream agent beats random (intervals apart): {summary['dream_beats_random']}; against the real-step "
          f"control: {summary['dream_vs_control']}")


if __name__ == "__main__":
    main()
