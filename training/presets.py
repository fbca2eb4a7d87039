"""Named budgets for the DIAMOND pipeline: the paper's, a GPU-hour one, a CPU demo, and a test micro."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PipelinePreset:
    """Everything the pipeline's loop needs besides the game; the defaults are the paper's (REFERENCE.md)."""

    world_model: str = "paper"  # a training.world_model.MODEL_PRESETS name
    actor_critic_channels: tuple[int, ...] = (32, 32, 64, 64)
    actor_critic_lstm_dim: int = 512
    epochs: int = 1000
    initial_random_steps: int = 5000
    collect_steps_per_epoch: int = 100
    epsilon: float = 0.01
    world_model_steps_per_epoch: int = 400
    actor_critic_steps_per_epoch: int = 400
    batch_size: int = 32
    rew_end_sequence_length: int = 19
    horizon: int = 15
    imagination_batch_size: int = 32
    eval_every: int = 50  # epochs; 0 = only at the end
    eval_episodes: int = 10
    final_eval_episodes: int = 100
    save_every: int = 1  # epochs between saved states

    def to_dict(self) -> dict[str, Any]:
        """The preset as JSON-ready values (saved in the run's config.json)."""
        return dataclasses.asdict(self)


PRESETS: dict[str, PipelinePreset] = {
    "paper": PipelinePreset(),
    # about an hour on one recent GPU: a sixth of the world model's compute, a fifth of the epochs
    "small": PipelinePreset(world_model="small", actor_critic_channels=(16, 16, 32, 32), actor_critic_lstm_dim=256,
                            epochs=200, initial_random_steps=2000, eval_every=50, final_eval_episodes=20),
    # start to finish in minutes on a 2-core CPU: a tiny model, a few short epochs; it shows every stage
    # working, not a good agent
    "demo": PipelinePreset(world_model="tiny", actor_critic_channels=(8, 8, 16, 16), actor_critic_lstm_dim=32,
                           epochs=4, initial_random_steps=1000, collect_steps_per_epoch=100,
                           world_model_steps_per_epoch=150, actor_critic_steps_per_epoch=20, batch_size=8,
                           rew_end_sequence_length=8, horizon=15, imagination_batch_size=8, eval_every=0,
                           final_eval_episodes=2),
    # seconds, for tests
    "micro": PipelinePreset(world_model="tiny", actor_critic_channels=(4, 4, 4, 4), actor_critic_lstm_dim=8,
                            epochs=2, initial_random_steps=150, collect_steps_per_epoch=20,
                            world_model_steps_per_epoch=2, actor_critic_steps_per_epoch=1, batch_size=2,
                            rew_end_sequence_length=4, horizon=3, imagination_batch_size=2, eval_every=0,
                            final_eval_episodes=1),
}


def get_preset(name: str) -> PipelinePreset:
    """A named preset, or a clear error listing the names."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]
