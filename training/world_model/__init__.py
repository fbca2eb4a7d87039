"""Training a DIAMOND world model (denoiser and reward/termination model) on collected episodes.

``python -m training.world_model`` runs it from the command line.
"""

from training.world_model.trainer import (
    NETWORKS,
    TRAINING_RECIPE,
    WorldModelTrainer,
    WorldModelTrainingConfig,
    changed_pixel_weights,
    segment_tensors,
    train_world_model,
)

__all__ = [
    "NETWORKS",
    "TRAINING_RECIPE",
    "WorldModelTrainer",
    "WorldModelTrainingConfig",
    "changed_pixel_weights",
    "segment_tensors",
    "train_world_model",
]
