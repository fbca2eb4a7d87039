"""Training a DIAMOND world model (denoiser and reward/termination model) on collected episodes.

``python -m training.world_model`` runs it from the command line.
"""

from training.world_model.objectives import changed_pixel_weights
from training.world_model.run import NETWORKS, train_world_model
from training.world_model.trainer import TRAINING_RECIPE, WorldModelTrainer, segment_tensors
from training.world_model.training_config import WorldModelTrainingConfig

__all__ = [
    "NETWORKS",
    "TRAINING_RECIPE",
    "WorldModelTrainer",
    "WorldModelTrainingConfig",
    "changed_pixel_weights",
    "segment_tensors",
    "train_world_model",
]
