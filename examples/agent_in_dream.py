"""An agent that learns only in a dream, judged in the real environment: a MiniGrid maze, end to end.

    pip install minigrid
    python examples/agent_in_dream.py                 # the cpu preset: about half an hour on 2 CPU cores
    python examples/agent_in_dream.py --quick         # seconds: every stage runs, nothing is learnt
    python examples/agent_in_dream.py --agent ppo     # stable-baselines3's PPO in the same dreams

DIAMOND's loop on MiniGrid-Empty-6x6 (its frames from ``RGBImgObsWrapper``, without the view highlight that
moves with every turn): real play is collected, the world model learns from it, the agent learns in the world
model's dreams, and the real maze judges the agent beside uniform random play on the same episodes (mean return
with its 95% bootstrap interval). Re-running the same command resumes the run folder where it stopped.
"""

import argparse

from training.data.environments import RealEnvironment
from training.pipeline import Pipeline

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--env-id", default="minigrid:MiniGrid-Empty-6x6-v0")
parser.add_argument("--quick", action="store_true", help="the seconds-long micro preset instead of cpu")
parser.add_argument("--agent", default="actor-critic", help="actor-critic (DIAMOND's), or an SB3 algorithm: ppo, ...")
parser.add_argument("--out", default=None, help="run folder (default: runs/agent-in-dream-<preset>-<agent>)")
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

maze = RealEnvironment(env_id=args.env_id, wrappers=("minigrid.wrappers:RGBImgObsWrapper",),
                       make_kwargs={"highlight": False})
preset = "micro" if args.quick else "cpu"
out = args.out or f"runs/agent-in-dream-{preset}-{args.agent}"
report = Pipeline(maze, out, preset, device="cpu", seed=args.seed, agent=args.agent).run()

print(f"{report['game']}: {report['env_steps']} real steps, {report['imagined_steps']} imagined steps for the agent "
      f"({report['agent']})")
for name, record in (("trained in the dream", report["final_evaluation"]),
                     ("random, the same episodes", report["random_evaluation"])):
    low, high = record["ci95"]
    print(f"  {name}: mean return {record['mean']:.3f} [{low:.3f}, {high:.3f}] over {record['episodes']} episodes")
apart = report["final_evaluation"]["ci95"][0] > report["random_evaluation"]["ci95"][1]
print(f"the dream's agent {'beats random' if apart else 'is not apart from random'} (95% intervals)")
print(f"time per stage (s): { {k: round(v) for k, v in report['seconds_per_stage'].items()} }")
