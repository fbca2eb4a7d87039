"""Context ghosts: train the denoiser to drop a copy of an object that its own frames made up.

Over its own frames a dream that hesitates between two places for an object (Pong's opponent paddle: a little up
or a little down) draws a bit of it at both, and from then on its context shows two. A denoiser trained on real
contexts has never seen a game draw an object twice, so it copies both, frame after frame: a dream of Pong ends up
with two or three opponent paddles, and a ball that passes between them scores a point the game would not give.

Here, in a share of the training samples, a small rectangle around something that moves in the context (a
paddle, the ball) is copied a few pixels away into the last context frames, while the targets keep the scene as
the game drew it: the denoiser learns that an object seen twice is one, and which copy the game goes on with. Only
the copied rectangle's object pixels (those away from the background colour) are pasted, so the ghost carries no
patch of background with it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gym_diamond.diffusion import quantize

MAX_HEIGHT = 8  # rows of the copied rectangle: a Pong paddle is 4-6 rows at 64 x 64, the ball 1-2
MAX_WIDTH = 3
SHIFT = (3, 24)  # the ghost's distance from its source along the rows, at least and at most
MAX_SIDEWAYS = 2  # and along the columns, either way
OBJECT_DISTANCE = 0.1  # a pixel farther than this from the background colour (any channel, in [-1, 1]) is an object's
UNIFORMS_PER_SAMPLE = 9


def add_context_ghosts(frames: Tensor, context_length: int, share: float, uniforms: Tensor) -> Tensor:
    """``frames`` (n, L + K, c, h, w) in [-1, 1] with, in a ``share`` of the samples, a ghost copy of a moving
    object pasted into the last context frames; the targets (the K frames after the context) untouched.

    ``uniforms`` (n, UNIFORMS_PER_SAMPLE) in [0, 1) decide everything random (which samples, which object, the
    ghost's size, offset, first frame and strength), so the caller draws them from its own generator for the whole
    batch. The ghost's source is a pixel of an object in the last context frame that differs between context frames; a
    sample without one gets no ghost. The background is the median colour of the last context frame.
    """
    n, _, _, h, w = frames.shape
    L = context_length
    if uniforms.shape != (n, UNIFORMS_PER_SAMPLE):
        raise ValueError(f"uniforms must be ({n}, {UNIFORMS_PER_SAMPLE}), got {tuple(uniforms.shape)}")
    context = frames[:, :L].clone()
    background = context[:, -1].flatten(2).median(dim=2).values  # (n, c)
    shown = (context[:, -1] - background[:, :, None, None]).abs().amax(dim=1) > OBJECT_DISTANCE  # (n, h, w)
    moving = shown & ((context.amax(dim=1) - context.amin(dim=1)).amax(dim=1) > 0)  # in the last frame, and moved
    for i in torch.nonzero(uniforms[:, 0] < share).flatten().tolist():
        u = uniforms[i].tolist()
        where = torch.nonzero(moving[i])
        if len(where) == 0:
            continue
        y, x = where[min(int(u[1] * len(where)), len(where) - 1)].tolist()
        height, width = 1 + int(u[2] * MAX_HEIGHT), 1 + int(u[3] * MAX_WIDTH)
        top, left = min(max(y - height // 2, 0), h - height), min(max(x - width // 2, 0), w - width)
        dy = SHIFT[0] + int(u[4] * (SHIFT[1] - SHIFT[0] + 1))
        dy = dy if u[5] < 0.5 else -dy
        dx = int(u[6] * (2 * MAX_SIDEWAYS + 1)) - MAX_SIDEWAYS
        to_top, to_left = min(max(top + dy, 0), h - height), min(max(left + dx, 0), w - width)
        first = int(u[7] * L)  # the ghost is in context frames first..L-1
        strength = 0.5 + 0.5 * u[8]
        source = context[i, first:, :, top:top + height, left:left + width]
        target = context[i, first:, :, to_top:to_top + height, to_left:to_left + width]
        is_object = (source - background[i, None, :, None, None]).abs().amax(dim=1, keepdim=True) > OBJECT_DISTANCE
        ghost = quantize(target + strength * (source - target), "round")  # 256 levels, as every frame it reads
        context[i, first:, :, to_top:to_top + height, to_left:to_left + width] = torch.where(is_object, ghost, target)
    return torch.cat([context, frames[:, L:]], dim=1)
