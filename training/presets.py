"""Named budgets for the DIAMOND pipeline: the paper's, a GPU-hour one, a CPU demo, and a test micro.

A preset composes the three trainers' own configs (``WorldModelTrainingConfig``, ``ImaginationConfig``,
``ActorCriticConfig``: their defaults are DIAMOND's, written once there) with the schedule below.
The schedule is DIAMOND's (its ``config/trainer.yaml`` and ``Trainer.run``): an initial collection of at
least ``initial_collect_min_steps`` real steps, going on ``collect_steps_per_epoch`` at a time until at
least ``initial_collect_threshold_rew`` steps carry a reward sign other than the most frequent one (or
``initial_collect_max_steps`` are reached); then epochs that each collect ``collect_steps_per_epoch``
steps until ``total_env_steps`` are in, followed by ``final_epochs`` that collect nothing. So the number
of epochs is known once the initial collection is done (:meth:`PipelinePreset.epochs`). The first
epoch trains every network ``*_steps_first_epoch`` times, the others ``*_steps_per_epoch`` times.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from gym_diamond.config import MODEL_SIZES, ActorCriticConfig, WorldModelConfig
from gym_diamond.errors import UserError
from training.agents.imagination import ImaginationConfig
from training.world_model.training_config import WorldModelTrainingConfig

# Version of the pipeline's schedule in a run's config.json: 2 is DIAMOND's (initial collection by its
# reward rule, first-epoch step counts, final epochs); run folders without it came before.
SCHEDULE = 2
COMPOSED = ("world_model_training", "imagination", "actor_critic")  # the trainers' configs a preset holds


@dataclass(frozen=True)
class PipelinePreset:
    """Everything the pipeline's loop needs besides the game; the defaults are DIAMOND's.

    Batch sizes in ``world_model_training`` and ``imagination`` are global: a data-parallel run splits them over
    its processes. Their speed switches (precision, compile) are the command's, not the preset's.
    """

    world_model: str = "paper"  # a gym_diamond.config.MODEL_SIZES name
    # Euler steps of the world model's sampler, in the dream the agent learns in and in the exported checkpoint
    # (None: the model size's, DIAMOND's 3); 1 triples a CPU's imagination where the game's frames allow it
    denoising_steps: int | None = None
    world_model_training: WorldModelTrainingConfig = field(default_factory=WorldModelTrainingConfig)
    imagination: ImaginationConfig = field(default_factory=ImaginationConfig)  # world_model_env, actor_critic
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)  # its size; the game sets its actions
    # real data (collection.train)
    total_env_steps: int = 100_000  # num_steps_total
    initial_collect_min_steps: int = 5000  # first_epoch.min
    initial_collect_max_steps: int | None = 10_000  # first_epoch.max (None: no maximum)
    initial_collect_threshold_rew: int = 10  # first_epoch.threshold_rew
    collect_steps_per_epoch: int = 100  # steps_per_epoch
    epsilon: float = 0.01
    final_epochs: int = 50  # training.num_final_epochs: epochs after the last collection
    # updates per epoch (steps_first_epoch, steps_per_epoch of each network)
    denoiser_steps_first_epoch: int = 10_000
    denoiser_steps_per_epoch: int = 400
    rew_end_steps_first_epoch: int = 10_000
    rew_end_steps_per_epoch: int = 400
    actor_critic_steps_first_epoch: int = 5000
    actor_critic_steps_per_epoch: int = 400
    # evaluation in the real game
    eval_every: int = 10  # epochs; 0 = only at the end
    eval_episodes: int = 4
    final_eval_episodes: int = 100
    save_every: int = 1  # epochs between saved states

    def __post_init__(self) -> None:
        per, low, high = self.collect_steps_per_epoch, self.initial_collect_min_steps, self.initial_collect_max_steps
        if per < 1 or low < 1 or low % per or (self.total_env_steps - low) % per:
            raise UserError(f"PipelinePreset: initial_collect_min_steps ({low}) and total_env_steps "
                            f"({self.total_env_steps}) must be positive multiples of collect_steps_per_epoch "
                            f"({per}) apart, as DIAMOND asserts")
        if high is not None and not low <= high <= self.total_env_steps:
            raise UserError(f"PipelinePreset: initial_collect_max_steps ({high}) must lie between "
                            f"initial_collect_min_steps ({low}) and total_env_steps ({self.total_env_steps})")
        if self.denoising_steps is not None and self.denoising_steps < 1:
            raise UserError(f"PipelinePreset: denoising_steps must be >= 1 (or None), got {self.denoising_steps}")
        if self.final_epochs < 0 or self.initial_collect_threshold_rew < 0:
            raise UserError("PipelinePreset: final_epochs and initial_collect_threshold_rew must be >= 0")

    def epochs(self, initial_steps: int) -> int:
        """The run's number of epochs after an initial collection of ``initial_steps`` real steps."""
        return self.collect_epochs(initial_steps) + self.final_epochs

    def collect_epochs(self, initial_steps: int) -> int:
        """Epochs that collect (DIAMOND's ``num_epochs_collect``): the rest of ``total_env_steps``, per epoch."""
        return max(0, self.total_env_steps - initial_steps) // self.collect_steps_per_epoch

    def steps_of(self, network: str, epoch: int) -> int:
        """Updates of ``network`` ("denoiser", "rew_end" or "actor_critic") in epoch ``epoch`` (from 1)."""
        return getattr(self, f"{network}_steps_{'first_epoch' if epoch == 1 else 'per_epoch'}")

    def to_dict(self) -> dict[str, Any]:
        """The preset as JSON-ready values, what a run is (its config.json): the speed switches left out."""
        actor_critic = self.actor_critic.to_dict()
        del actor_critic["num_actions"]
        composed = {"world_model_training": self.world_model_training.run_settings(),
                    "imagination": self.imagination.run_settings(), "actor_critic": actor_critic}
        return json.loads(json.dumps({**self._schedule(), **composed}))

    def world_model_config(self, num_actions: int) -> WorldModelConfig:
        """The world model this preset trains, for a game of ``num_actions`` actions: the model size's, with the
        training config's denoiser settings (training noise, context length) written in."""
        config = MODEL_SIZES[self.world_model](num_actions)
        config = config.replace(denoiser=self.world_model_training.denoiser_config(config.denoiser))
        return config if self.denoising_steps is None else config.with_denoising_steps(self.denoising_steps)

    def _schedule(self) -> dict[str, Any]:
        """The preset's own fields: the model size and the schedule, the composed configs left out (and
        ``denoising_steps`` where it is the model's own, as run folders recorded before it existed)."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__
                if f not in COMPOSED and not (f == "denoising_steps" and self.denoising_steps is None)}

    def legacy_dict(self) -> dict[str, Any]:
        """The preset as run folders wrote it before it composed the trainers' configs (a flat copy of some of
        their fields), so that those runs resume."""
        wm, im = self.world_model_training, self.imagination
        return {**self._schedule(), "actor_critic_channels": list(self.actor_critic.channels),
                "actor_critic_lstm_dim": self.actor_critic.lstm_dim, "batch_size": wm.batch_size,
                "rew_end_sequence_length": wm.rew_end_sequence_length,
                "sample_weights": None if wm.sample_weights is None else list(wm.sample_weights),
                "horizon": im.horizon, "backup_every": im.backup_every, "imagination_batch_size": im.batch_size,
                "num_batches_to_preload": im.num_batches_to_preload}


PRESETS: dict[str, PipelinePreset] = {
    "paper": PipelinePreset(),
    # about an hour on one recent GPU: a sixth of the world model's compute, a fifth of the real data and epochs
    "small": PipelinePreset(world_model="small",
                            actor_critic=ActorCriticConfig(channels=(16, 16, 32, 32), lstm_dim=256),
                            total_env_steps=20_000, initial_collect_min_steps=2000, initial_collect_max_steps=4000,
                            final_epochs=20, denoiser_steps_first_epoch=2000, rew_end_steps_first_epoch=2000,
                            actor_critic_steps_first_epoch=1000, eval_every=50, final_eval_episodes=20),
    # start to finish in about 8 minutes on a 2-core CPU: a tiny model, 1,300 real steps in up to 4 short
    # epochs; it shows every stage working, not a good agent
    "demo": PipelinePreset(world_model="tiny", actor_critic=ActorCriticConfig(channels=(8, 8, 16, 16), lstm_dim=32),
                           world_model_training=WorldModelTrainingConfig(batch_size=8, rew_end_sequence_length=9),
                           imagination=ImaginationConfig(batch_size=8, num_batches_to_preload=16),
                           total_env_steps=1300, initial_collect_min_steps=1000, initial_collect_max_steps=1300,
                           final_epochs=1, denoiser_steps_first_epoch=250, denoiser_steps_per_epoch=100,
                           rew_end_steps_first_epoch=300, rew_end_steps_per_epoch=100,
                           actor_critic_steps_first_epoch=30, actor_critic_steps_per_epoch=15,
                           eval_every=0, final_eval_episodes=2),
    # a small image environment (a MiniGrid maze) from nothing to an evaluated agent on a 2-core CPU: the tiny
    # world model trained with the CPU recipe (training.world_model.RECIPES["cpu"]: 10x DIAMOND's learning rate)
    # without its average of the weights (the mazes were measured so; a 1,000-update average would lag an epoch),
    # a third of each reward/termination batch cut around rewards and ends and a quarter of each denoiser batch
    # drawing the frame after a reward (rare, and what the agent's return depends on: without them the dream never
    # draws the agent on the goal), dreams sampled with one Euler step, a small actor-critic, 3,000 real steps
    "cpu": PipelinePreset(world_model="tiny", denoising_steps=1,
                          actor_critic=ActorCriticConfig(channels=(16, 16, 32, 32), lstm_dim=128),
                          world_model_training=WorldModelTrainingConfig.from_recipe(
                              "cpu", batch_size=16, ema_decay=0.0, reward_oversampling=0.3,
                              termination_oversampling=0.2, denoiser_reward_oversampling=0.25),
                          imagination=ImaginationConfig(batch_size=16, num_batches_to_preload=32),
                          total_env_steps=3000, initial_collect_min_steps=1000, initial_collect_max_steps=2000,
                          collect_steps_per_epoch=200, final_epochs=5, denoiser_steps_first_epoch=1500,
                          denoiser_steps_per_epoch=200, rew_end_steps_first_epoch=300, rew_end_steps_per_epoch=50,
                          actor_critic_steps_first_epoch=60, actor_critic_steps_per_epoch=30, eval_every=2,
                          eval_episodes=8, final_eval_episodes=30),
    # seconds, for tests: 2 epochs that both collect, no final epoch
    "micro": PipelinePreset(world_model="tiny", actor_critic=ActorCriticConfig(channels=(4, 4, 4, 4), lstm_dim=8),
                            world_model_training=WorldModelTrainingConfig(batch_size=2, rew_end_sequence_length=5),
                            imagination=ImaginationConfig(horizon=3, backup_every=3, batch_size=2,
                                                          num_batches_to_preload=2),
                            total_env_steps=180, initial_collect_min_steps=140, initial_collect_max_steps=140,
                            initial_collect_threshold_rew=0, collect_steps_per_epoch=20, final_epochs=0,
                            denoiser_steps_first_epoch=2, denoiser_steps_per_epoch=2, rew_end_steps_first_epoch=2,
                            rew_end_steps_per_epoch=2, actor_critic_steps_first_epoch=1,
                            actor_critic_steps_per_epoch=1, eval_every=0, final_eval_episodes=1),
}
# the cpu preset for a maze whose only reward is rare under random play (MiniGrid-DoorKey-5x5: about one success
# in 3,000 random steps, so the cpu preset's 3,000 steps hold one reward and the dream learns none): random play
# goes on, 2,000 steps at a time, until 12 rewarded steps are in (DIAMOND's own rule for its first collection, with
# a larger cap), and the actor-critic, whose dreams now hold a door and a key, gets twice the cpu preset's updates
PRESETS["cpu-sparse"] = replace(PRESETS["cpu"], total_env_steps=40_000, initial_collect_min_steps=2000,
                                initial_collect_max_steps=40_000, initial_collect_threshold_rew=12,
                                collect_steps_per_epoch=2000, final_epochs=6, actor_critic_steps_per_epoch=60)


def get_preset(name: str) -> PipelinePreset:
    """A named preset, or a clear error listing the names."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]


def override_preset(preset: PipelinePreset, assignments: Sequence[str]) -> PipelinePreset:
    """``preset`` with fields set by ``FIELD=VALUE`` assignments, as DIAMOND's command line sets its config's
    (``actor_critic_steps_per_epoch=150``; a composed trainer config's field by a dotted name,
    ``imagination.horizon=30``). Values are JSON (numbers, ``null``, lists) or else plain words, and must have the
    field's type; the preset's own checks run on the result."""
    for assignment in assignments:
        name, sep, text = assignment.partition("=")
        if not sep or not name:
            raise UserError(f"preset override {assignment!r}: expected FIELD=VALUE, e.g. "
                            f"actor_critic_steps_per_epoch=150")
        path = name.split(".")
        if len(path) > 2:
            raise UserError(f"preset override {assignment!r}: at most one dot (a composed config's field)")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        preset = _with_field(preset, path, value, assignment)
    return preset


def _with_field(config: Any, path: list[str], value: Any, assignment: str) -> Any:
    """``config`` (a dataclass) with the field at ``path`` set to ``value``, type-checked against its current one."""
    known = {f.name: f for f in fields(config)}
    if path[0] not in known:
        raise UserError(f"preset override {assignment!r}: {type(config).__name__} has no field {path[0]!r}; "
                        f"its fields: {', '.join(sorted(known))}")
    current = getattr(config, path[0])
    if len(path) == 2:
        if not is_dataclass(current):
            raise UserError(f"preset override {assignment!r}: {path[0]} is not a composed config")
        return replace(config, **{path[0]: _with_field(current, path[1:], value, assignment)})
    if is_dataclass(current):
        raise UserError(f"preset override {assignment!r}: {path[0]} is a config; set one of its fields, "
                        f"e.g. {path[0]}.{fields(current)[0].name}=...")
    return replace(config, **{path[0]: _typed(current, value, "None" in str(known[path[0]].type), assignment)})


def _typed(current: Any, value: Any, optional: bool, assignment: str) -> Any:
    """``value`` as the type of the field's ``current`` value, or a clear error."""
    if value is None and (optional or current is None):
        return None
    if isinstance(current, bool) or isinstance(value, bool):
        ok = isinstance(current, bool) and isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int)
    elif isinstance(current, float):
        ok, value = isinstance(value, int | float), float(value) if isinstance(value, int | float) else value
    elif isinstance(current, tuple):
        ok, value = isinstance(value, list), tuple(value) if isinstance(value, list) else value
    elif current is None:
        ok, value = True, tuple(value) if isinstance(value, list) else value
    else:
        ok = isinstance(value, type(current))
    if not ok:
        raise UserError(f"preset override {assignment!r}: expected a value like {current!r}, got {value!r}")
    return value
