"""Building blocks shared by the U-Net and the reward/termination encoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.config import ATTENTION_RESIDUALS, GROUP_SIZE
from gym_diamond.errors import UserError

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (n, lstm_dim): the reward/termination model's and the actor-critic's


def num_groups(channels: int) -> int:
    """Groups of 32 channels, and a single group for narrow layers."""
    return max(1, channels // GROUP_SIZE)


class GroupNorm(nn.GroupNorm):
    def __init__(self, channels: int) -> None:
        super().__init__(num_groups(channels), channels)


class AdaGroupNorm(nn.Module):
    """Group norm whose scale and shift come from the conditioning vector: x * (1 + scale) + shift."""

    def __init__(self, channels: int, cond_channels: int) -> None:
        super().__init__()
        self.channels = channels
        self.groups = num_groups(channels)
        self.linear = nn.Linear(cond_channels, 2 * channels)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = F.group_norm(x, self.groups)
        scale, shift = self.linear(cond)[:, :, None, None].chunk(2, dim=1)
        return torch.addcmul(shift, x, 1 + scale)  # one pass over x instead of two


class SelfAttention2d(nn.Module):
    """Multi-head self-attention over spatial positions, residual, zero-initialised output.

    ``residual="normalized"`` returns ``norm(x) + out(y)`` as DIAMOND's code does (its weights were
    trained that way); ``"input"`` returns ``x + out(y)`` (gym-diamond 0.1 checkpoints).
    """

    def __init__(self, channels: int, head_dim: int, residual: str = "normalized") -> None:
        super().__init__()
        if residual not in ATTENTION_RESIDUALS:
            raise UserError(f"residual={residual!r}: expected one of {ATTENTION_RESIDUALS}")
        self.residual = residual
        self.num_heads = max(1, channels // head_dim)
        self.norm = GroupNorm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.out = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        normed = self.norm(x)
        qkv = self.qkv(normed).reshape(n, 3, self.num_heads, c // self.num_heads, h * w)
        q, k, v = qkv.transpose(-1, -2).unbind(1)  # each (n, heads, hw, head_dim)
        y = F.scaled_dot_product_attention(q, k, v)
        y = y.transpose(-1, -2).reshape(n, c, h, w)
        return (normed if self.residual == "normalized" else x) + self.out(y)


class ResBlock(nn.Module):
    """Two (adaptive norm, SiLU, 3x3 conv) layers around a skip; the second conv's weights start at zero
    (its bias at PyTorch's default, as DIAMOND's), so every block begins close to the identity, which
    keeps deep U-Nets trainable from the first step."""

    def __init__(self, in_channels: int, out_channels: int, cond_channels: int,
                 attn_head_dim: int | None = None, attention_residual: str = "normalized") -> None:
        super().__init__()
        self.proj = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        self.norm1 = AdaGroupNorm(in_channels, cond_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = AdaGroupNorm(out_channels, cond_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        self.attn = (nn.Identity() if attn_head_dim is None
                     else SelfAttention2d(out_channels, attn_head_dim, attention_residual))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        skip = self.proj(x)
        x = self.conv1(F.silu(self.norm1(x, cond)))
        x = self.conv2(F.silu(self.norm2(x, cond)))
        return self.attn(x + skip)


class Downsample(nn.Conv2d):
    """Stride-2 3x3 convolution: halves the resolution. Orthogonal weights at initialisation, as DIAMOND's."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, stride=2, padding=1)
        nn.init.orthogonal_(self.weight)


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 convolution: doubles the resolution without checkerboard artefacts."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class FourierFeatures(nn.Module):
    """Random Fourier features of a scalar (the noise level), fixed at initialisation."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("weight", torch.randn(1, dim // 2))

    def forward(self, x: Tensor) -> Tensor:
        f = 2 * math.pi * x[:, None] * self.weight
        return torch.cat([f.cos(), f.sin()], dim=-1)


def init_lstm(module: nn.Module) -> None:
    """DIAMOND's LSTM initialisation (its ``utils.init_lstm``): Xavier input weights, orthogonal recurrent
    weights, zero biases but a forget-gate bias of 1, so the cell keeps its memory at first."""
    for name, p in module.named_parameters():
        if "weight_ih" in name:
            nn.init.xavier_uniform_(p.data)
        elif "weight_hh" in name:
            nn.init.orthogonal_(p.data)
        elif "bias_ih" in name:
            p.data.zero_()
            n = p.size(0)
            p.data[n // 4:n // 2] = 1  # gates are ordered (input, forget, cell, output)
        elif "bias_hh" in name:
            p.data.zero_()
