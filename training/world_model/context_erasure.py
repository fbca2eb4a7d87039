"""Context erasure: train the denoiser to repair a fixed scene that its own frames let fade.

A denoiser trained on real contexts copies what stays still (Pong's walls, the score) from its context: given a
context whose walls were cut short or faded, it draws them cut short or faded, step after step. Over its own
frames small losses there are never repaired and add up, until a long dream has lost half its court. Gaussian
noise on the context (``context_noise``, GameNGen's remedy) does not teach the repair: the denoiser averages the
noise away and still copies.

Here, in a share of the training samples, patches of what stays still over the whole sample (every context frame
and target) are faded towards the sample's background colour in every context frame, while the targets keep
them: the denoiser learns to draw the fixed scene back from its prior. What moves within the sample (the ball, a
paddle in play) is never touched; a paddle that stands still through all of the sample's frames may be faded as the
court is, and the target then asks the denoiser to draw it back where it stood.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gym_diamond.diffusion import quantize

# each erased sample gets this many rectangles: up to 16 rows high and 4 to 32 columns wide, each faded by a
# strength drawn in [0, 1] (1 erases it to the background)
PATCHES = 3
MAX_HEIGHT = 16
WIDTHS = (4, 32)
UNIFORMS_PER_SAMPLE = 1 + 5 * PATCHES


def erase_still_patches(frames: Tensor, context_length: int, share: float, uniforms: Tensor) -> Tensor:
    """``frames`` (n, L + K, c, h, w) in [-1, 1] with patches of their still pixels faded in the L context frames.

    ``uniforms`` (n, UNIFORMS_PER_SAMPLE) in [0, 1) decide everything random (which samples, where, how much), so
    the caller draws them from its own generator for the whole batch. A pixel is still when it has the same
    colour in every frame of its sample; the background is the median colour of the last context frame.
    """
    n, _, _, h, w = frames.shape
    L = context_length
    if uniforms.shape != (n, UNIFORMS_PER_SAMPLE):
        raise ValueError(f"uniforms must be ({n}, {UNIFORMS_PER_SAMPLE}), got {tuple(uniforms.shape)}")
    chosen = uniforms[:, 0] < share
    rect = uniforms[:, 1:].view(n, PATCHES, 5)
    heights = 1 + (rect[..., 0] * MAX_HEIGHT).long()
    widths = WIDTHS[0] + (rect[..., 1] * (WIDTHS[1] - WIDTHS[0] + 1)).long()
    tops = (rect[..., 2] * (h - heights + 1)).long()
    lefts = (rect[..., 3] * (w - widths + 1)).long()
    rows = torch.arange(h, device=frames.device).view(1, 1, h, 1)
    cols = torch.arange(w, device=frames.device).view(1, 1, 1, w)
    inside = ((rows >= tops[..., None, None]) & (rows < (tops + heights)[..., None, None])
              & (cols >= lefts[..., None, None]) & (cols < (lefts + widths)[..., None, None]))
    amount = (inside * rect[..., 4, None, None]).amax(dim=1)  # (n, h, w): the strongest patch over each pixel
    still = (frames.amax(dim=1) - frames.amin(dim=1)).amax(dim=1) == 0  # (n, h, w)
    amount = amount * still * chosen[:, None, None]
    context = frames[:, :L]
    background = context[:, -1].flatten(2).median(dim=2).values  # (n, c)
    faded = context + amount[:, None, None] * (background[:, None, :, None, None] - context)
    faded = quantize(faded, "round")  # 256 levels, as every frame the denoiser reads
    faded = torch.where(amount[:, None, None] > 0, faded, context)
    return torch.cat([faded, frames[:, L:]], dim=1)
