"""Named budgets for the DIAMOND pipeline: the paper's, a GPU-hour one, a CPU demo, and a test micro.

The schedule is DIAMOND's (its ``config/trainer.yaml`` and ``Trainer.run``): an initial collection of at
least ``initial_collect_min_steps`` real steps, going on ``collect_steps_per_epoch`` at a time until at
least ``initial_collect_threshold_rew`` steps carry a reward sign other than the most frequent one (or
``initial_collect_max_steps`` are reached); then epochs that each collect ``collect_steps_per_epoch``
steps until ``total_env_steps`` are in, followed by ``final_epochs`` that collect nothing. So the number
of epochs is known once the initial collection is done (:meth:`PipelinePreset.epochs`). The first
epoch trains every network ``*_steps_first_epoch`` times, the others ``*_steps_per_epoch`` times.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from gym_diamond.errors import UserError
from training.data.dataset import DIAMOND_SAMPLE_WEIGHTS, check_sample_weights

# Version of the pipeline's schedule in a run's config.json: 2 is DIAMOND's (initial collection by its
# reward rule, first-epoch step counts, final epochs); run folders without it came before.
SCHEDULE = 2


@dataclass(frozen=True)
class PipelinePreset:
    """Everything the pipeline's loop needs besides the game; the defaults are DIAMOND's."""

    world_model: str = "paper"  # a gym_diamond.config.MODEL_SIZES name
    actor_critic_channels: tuple[int, ...] = (32, 32, 64, 64)
    actor_critic_lstm_dim: int = 512
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
    # world model training
    batch_size: int = 32
    rew_end_sequence_length: int = 19  # frames: horizon 15 + context 4
    sample_weights: tuple[float, ...] | None = DIAMOND_SAMPLE_WEIGHTS  # recency groups, every sampler
    # imagination (world_model_env, actor_critic)
    horizon: int = 15
    backup_every: int = 15
    imagination_batch_size: int = 32
    num_batches_to_preload: int = 256
    # evaluation in the real game
    eval_every: int = 10  # epochs; 0 = only at the end
    eval_episodes: int = 4
    final_eval_episodes: int = 100
    save_every: int = 1  # epochs between saved states

    def __post_init__(self) -> None:
        if isinstance(self.actor_critic_channels, list):
            object.__setattr__(self, "actor_critic_channels", tuple(self.actor_critic_channels))
        if self.sample_weights is not None:
            object.__setattr__(self, "sample_weights", check_sample_weights(self.sample_weights))
        per, low, high = self.collect_steps_per_epoch, self.initial_collect_min_steps, self.initial_collect_max_steps
        if per < 1 or low < 1 or low % per or (self.total_env_steps - low) % per:
            raise UserError(f"PipelinePreset: initial_collect_min_steps ({low}) and total_env_steps "
                            f"({self.total_env_steps}) must be positive multiples of collect_steps_per_epoch "
                            f"({per}) apart, as DIAMOND asserts")
        if high is not None and not low <= high <= self.total_env_steps:
            raise UserError(f"PipelinePreset: initial_collect_max_steps ({high}) must lie between "
                            f"initial_collect_min_steps ({low}) and total_env_steps ({self.total_env_steps})")
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
        """The preset as JSON-ready values (saved in the run's config.json)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, PipelinePreset] = {
    "paper": PipelinePreset(),
    # about an hour on one recent GPU: a sixth of the world model's compute, a fifth of the real data and epochs
    "small": PipelinePreset(world_model="small", actor_critic_channels=(16, 16, 32, 32), actor_critic_lstm_dim=256,
                            total_env_steps=20_000, initial_collect_min_steps=2000, initial_collect_max_steps=4000,
                            final_epochs=20, denoiser_steps_first_epoch=2000, rew_end_steps_first_epoch=2000,
                            actor_critic_steps_first_epoch=1000, eval_every=50, final_eval_episodes=20),
    # start to finish in about 8 minutes on a 2-core CPU: a tiny model, 1,300 real steps in up to 4 short
    # epochs; it shows every stage working, not a good agent
    "demo": PipelinePreset(world_model="tiny", actor_critic_channels=(8, 8, 16, 16), actor_critic_lstm_dim=32,
                           total_env_steps=1300, initial_collect_min_steps=1000, initial_collect_max_steps=1300,
                           final_epochs=1, denoiser_steps_first_epoch=250, denoiser_steps_per_epoch=100,
                           rew_end_steps_first_epoch=300, rew_end_steps_per_epoch=100,
                           actor_critic_steps_first_epoch=30, actor_critic_steps_per_epoch=15, batch_size=8,
                           rew_end_sequence_length=9, imagination_batch_size=8, num_batches_to_preload=16,
                           eval_every=0, final_eval_episodes=2),
    # seconds, for tests: 2 epochs that both collect, no final epoch
    "micro": PipelinePreset(world_model="tiny", actor_critic_channels=(4, 4, 4, 4), actor_critic_lstm_dim=8,
                            total_env_steps=180, initial_collect_min_steps=140, initial_collect_max_steps=140,
                            initial_collect_threshold_rew=0, collect_steps_per_epoch=20, final_epochs=0,
                            denoiser_steps_first_epoch=2, denoiser_steps_per_epoch=2, rew_end_steps_first_epoch=2,
                            rew_end_steps_per_epoch=2, actor_critic_steps_first_epoch=1,
                            actor_critic_steps_per_epoch=1, batch_size=2, rew_end_sequence_length=5, horizon=3,
                            backup_every=3, imagination_batch_size=2, num_batches_to_preload=2, eval_every=0,
                            final_eval_episodes=1),
}


def get_preset(name: str) -> PipelinePreset:
    """A named preset, or a clear error listing the names."""
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
