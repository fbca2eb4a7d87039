"""The denoiser's network F: a U-Net conditioned on the noise level and the past actions."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.config import UNetConfig
from gym_diamond.nn.blocks import Downsample, FourierFeatures, GroupNorm, ResBlock, Upsample


class UNet(nn.Module):
    """Predicts F(c_in * x, c_noise, context, actions) for the EDM preconditioner.

    Each level keeps the activations it produced (its input and each block's output) and the
    matching up level consumes them all by concatenation, one per block, so the up path has one
    more block per level than the down path.
    """

    def __init__(self, config: UNetConfig, in_channels: int, out_channels: int, num_actions: int,
                 context_length: int) -> None:
        super().__init__()
        ch, n, cond = config.channels, config.blocks_per_level, config.cond_channels
        self.noise_emb = FourierFeatures(cond)
        self.action_emb = nn.Embedding(num_actions, cond // context_length)
        self.cond_proj = nn.Sequential(nn.Linear(cond, cond), nn.SiLU(), nn.Linear(cond, cond))
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)

        self.downsamples = nn.ModuleList([nn.Identity()] + [Downsample(c) for c in ch[:-1]])
        self.down = nn.ModuleList()
        self.up = nn.ModuleList()
        for i, c in enumerate(ch):
            c_prev = ch[max(0, i - 1)]
            self.down.append(nn.ModuleList(
                [ResBlock(c_prev if j == 0 else c, c, cond) for j in range(n)]))
            # up level i receives, in reverse order: each down block's output (c) and the level input (c_prev)
            skips = [c] * n + [c_prev]
            outs = [c] * n + [c_prev]
            self.up.append(nn.ModuleList(
                [ResBlock((c if j == 0 else outs[j - 1]) + skips[j], outs[j], cond) for j in range(n + 1)]))
        attn = config.attn_head_dim if config.mid_attention else None
        self.mid = nn.ModuleList([ResBlock(ch[-1], ch[-1], cond, attn, config.attention_residual) for _ in range(2)])
        self.upsamples = nn.ModuleList([nn.Identity()] + [Upsample(c) for c in reversed(ch[:-1])])

        self.norm_out = GroupNorm(ch[0])
        self.conv_out = nn.Conv2d(ch[0], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # the bias keeps PyTorch's default, as DIAMOND's

    def forward(self, noisy: Tensor, c_noise: Tensor, context: Tensor, actions: Tensor) -> Tensor:
        """noisy: (n, c, h, w); c_noise: (n,); context: (n, L*c, h, w); actions: (n, L) -> (n, c, h, w)."""
        cond = self.cond_proj(self.noise_emb(c_noise) + self.action_emb(actions).flatten(1))
        x = self.conv_in(torch.cat([context, noisy], dim=1))
        skips: list[list[Tensor]] = []
        for down, blocks in zip(self.downsamples, self.down, strict=True):
            x = down(x)
            level = [x]
            for block in blocks:
                x = block(x, cond)
                level.append(x)
            skips.append(level)
        for block in self.mid:
            x = block(x, cond)
        for up, blocks, level in zip(self.upsamples, reversed(self.up), reversed(skips), strict=True):
            x = up(x)
            for block, skip in zip(blocks, reversed(level), strict=True):
                x = block(torch.cat([x, skip], dim=1), cond)
        return self.conv_out(F.silu(self.norm_out(x)))
