"""Network building blocks and DIAMOND's networks."""

from gym_diamond.nn.denoiser import Denoiser
from gym_diamond.nn.rew_end import RewEndModel
from gym_diamond.nn.unet import UNet

__all__ = ["Denoiser", "RewEndModel", "UNet"]
