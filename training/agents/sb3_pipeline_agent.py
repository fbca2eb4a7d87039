"""A stable-baselines3 algorithm in DIAMOND's loop, in place of its actor-critic (``training.pipeline --agent ppo``).

Each epoch the agent learns in the dream as it stands (the world model being trained, ``DreamSB3VecEnv`` over a
``DreamCore``) for as many imagined steps as DIAMOND's actor-critic would take in that epoch (its updates x
``ImaginationConfig.batch_size`` dreams x ``backup_every`` steps), from the real contexts of the data collected so
far, each dream cut after ``ImaginationConfig.horizon`` steps as DIAMOND's imagination cuts them. It then plays the
real game for the next collection. Until its first training it does not exist, and the real game is played
uniformly at random, as DIAMOND's untrained actor-critic (zero heads) plays.

On-policy algorithms collect ``backup_every`` steps per rollout by default (SB3's 2,048 per dream would take
many epochs to fill) and, for PPO, learn from the whole rollout as one minibatch; ``algo_kwargs`` overrides both.
The model is saved as SB3 saves it, in ``MODEL_FILE`` of the run folder (it holds the optimiser, so a resumed
run learns on); the exported policy is ``policy.safetensors`` plus ``policy.json``
(``training.agents.sb3.save_policy_safetensors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.vec_env import VecEnv, VecMonitor

from gym_diamond.atomic import write_atomic
from gym_diamond.checkpoint import StartBank
from gym_diamond.envs.core import DreamCore
from gym_diamond.envs.sb3 import DreamSB3VecEnv
from gym_diamond.errors import UserError
from gym_diamond.world_model import WorldModel
from training.agents.imagination import ImaginationConfig
from training.agents.sb3 import constructor_parameters, save_policy_safetensors
from training.agents.sb3_algorithms import algorithm_class
from training.data.policies import RandomAgent, SB3Agent

__all__ = ["ACTOR_CRITIC", "MODEL_FILE", "SB3PipelineAgent"]

ACTOR_CRITIC = "actor-critic"  # the pipeline's own agent, DIAMOND's; any other name is an SB3 algorithm's
MODEL_FILE = "sb3_model.zip"  # the SB3 agent's saved model in a run folder


class SB3PipelineAgent:
    """``algo`` (an SB3 algorithm's name) trained in the pipeline's dream; ``model_path`` is its saved model."""

    def __init__(self, algo: str, action_meanings: list[str], imagination: ImaginationConfig, model_path: Path, *,
                 algo_kwargs: dict[str, Any] | None = None, seed: int = 0, device: Any = "cpu") -> None:
        self.algo_cls = algorithm_class(algo)
        self.action_meanings, self.imagination = list(action_meanings), imagination
        self.model_path, self.algo_kwargs = Path(model_path), dict(algo_kwargs or {})
        self.seed, self.device = seed, device
        self.model: BaseAlgorithm | None = None
        if self.model_path.exists():
            self.model = self.algo_cls.load(self.model_path, device=device)

    @property
    def name(self) -> str:
        return self.algo_cls.__name__

    @property
    def steps(self) -> int:
        """Imagined steps learnt from so far."""
        return 0 if self.model is None else int(self.model.num_timesteps)

    def steps_for(self, updates: int) -> int:
        """The imagined steps that ``updates`` actor-critic updates would learn from."""
        return updates * self.imagination.batch_size * self.imagination.backup_every

    def _dream(self, world_model: WorldModel, starts: StartBank) -> VecEnv:
        core = DreamCore(world_model, starts, num_envs=self.imagination.batch_size,
                         max_episode_steps=self.imagination.horizon, autoreset=True)
        return VecMonitor(DreamSB3VecEnv(core, self.action_meanings))

    def _new_model(self, env: VecEnv) -> BaseAlgorithm:
        kwargs = dict(self.algo_kwargs)
        if issubclass(self.algo_cls, OnPolicyAlgorithm):
            kwargs.setdefault("n_steps", self.imagination.backup_every)
            if "batch_size" in constructor_parameters(self.algo_cls):
                kwargs.setdefault("batch_size", kwargs["n_steps"] * env.num_envs)
        elif "buffer_size" in constructor_parameters(self.algo_cls):
            kwargs.setdefault("buffer_size", 100_000)  # SB3's million 64x64x3 frames would take 12 GB
        try:
            return self.algo_cls("CnnPolicy", env, seed=self.seed, device=self.device, **kwargs)
        except (AssertionError, TypeError) as error:  # SB3 checks spaces with asserts; a wrong keyword is a TypeError
            raise UserError(f"{self.name} cannot be made with {kwargs}: {error}") from None

    def learn(self, world_model: WorldModel, starts: StartBank, steps: int) -> dict[str, float]:
        """``steps`` imagined steps of learning in the dream of ``world_model`` started from ``starts``."""
        try:
            return self.learn_in(self._dream(world_model, starts), steps)
        finally:
            world_model.train()  # the dream put it in eval mode; its trainer's steps expect train mode back

    def learn_in(self, env: VecEnv, steps: int) -> dict[str, float]:
        """``steps`` steps of learning in ``env`` (closed afterwards), the model made on first use with the
        settings above: the dream's, or the real environment's for a control trained with the same algorithm."""
        try:
            if self.model is None:
                self.model = self._new_model(env)
            else:
                self.model.set_env(env)
            self.model.learn(total_timesteps=steps, reset_num_timesteps=False)
        finally:
            env.close()
        values = self.model.logger.name_to_value
        return {"imagined_steps": float(self.model.num_timesteps),
                **{k.split("/")[-1]: float(v) for k, v in values.items() if k.startswith("train/")}}

    def playing_agent(self, num_envs: int, seed: int) -> RandomAgent | SB3Agent:
        """The agent that plays the real game: the policy, or uniform random play before its first training."""
        return RandomAgent(len(self.action_meanings), seed=seed) if self.model is None else SB3Agent(self.model)

    def save(self) -> None:
        """SB3's model.zip, written whole or not at all."""
        if self.model is not None:
            write_atomic(self.model_path, self.model.save)

    def export(self, out: Path) -> Path:
        """The policy without pickles (``policy.safetensors`` and ``policy.json`` in ``out``)."""
        if self.model is None:
            raise UserError("the agent never trained: there is no policy to export")
        save_policy_safetensors(self.model, out, self.name, frame_stack=1)
        return out / "policy.safetensors"
