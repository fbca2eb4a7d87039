"""Reward and termination model: classifies each transition (frame, action, next frame).

Rewards are predicted as their sign (3 classes: -1, 0, +1) and termination as 2 classes; an LSTM
carries what a single transition cannot show (e.g. how long the ball has been gone). Its state is
warmed up ("burn-in") on the real context an imagined episode starts from.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.config import RewEndConfig
from gym_diamond.nn.blocks import Downsample, GroupNorm, LSTMState, ResBlock, init_lstm

"""(h, c), each (1, n, lstm_dim), as torch.nn.LSTM keeps it."""


class RewEndEncoder(nn.Module):
    """Action-conditioned CNN: levels of residual blocks, stride-2 downsampling between levels,
    two attention blocks at the lowest resolution (DIAMOND's encoder ends there; ``config.norm_out``
    adds gym-diamond 0.1's group norm and SiLU after them)."""

    def __init__(self, config: RewEndConfig, in_channels: int) -> None:
        super().__init__()
        ch, cond = config.channels, config.cond_channels
        self.conv_in = nn.Conv2d(in_channels, ch[0], 3, padding=1)
        self.blocks = nn.ModuleList()
        for i, c in enumerate(ch):
            c_prev = ch[max(0, i - 1)]
            if i > 0:
                self.blocks.append(Downsample(c_prev))
            for j in range(config.blocks_per_level):
                self.blocks.append(ResBlock(c_prev if j == 0 else c, c, cond))
        for _ in range(2):
            self.blocks.append(ResBlock(ch[-1], ch[-1], cond, config.attn_head_dim, config.attention_residual))
        self.norm_out = GroupNorm(ch[-1]) if config.norm_out else None

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        x = self.conv_in(x)
        for block in self.blocks:
            x = block(x, cond) if isinstance(block, ResBlock) else block(x)
        return x if self.norm_out is None else F.silu(self.norm_out(x))


@dataclass(frozen=True)
class RewEndOutput:
    reward_logits: Tensor  # (n, t, 3): classes for reward -1, 0, +1
    end_logits: Tensor  # (n, t, 2): not terminated, terminated
    state: LSTMState


class RewEndModel(nn.Module):
    def __init__(self, config: RewEndConfig, num_actions: int, image_channels: int = 3,
                 image_size: int = 64) -> None:
        super().__init__()
        self.config = config
        self.encoder = RewEndEncoder(config, 2 * image_channels)
        self.action_emb = nn.Embedding(num_actions, config.cond_channels)
        side = image_size // 2 ** (len(config.channels) - 1)
        self.lstm = nn.LSTM(config.channels[-1] * side * side, config.lstm_dim, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(config.lstm_dim, config.lstm_dim), nn.SiLU(), nn.Linear(config.lstm_dim, 3 + 2, bias=False))
        init_lstm(self.lstm)

    def initial_state(self, n: int, device: torch.device | str | None = None) -> LSTMState:
        """Zero LSTM state (h, c) for n sequences."""
        device = device if device is not None else self.action_emb.weight.device
        zeros = torch.zeros(1, n, self.config.lstm_dim, device=device)
        return zeros, zeros.clone()

    def forward(self, frames: Tensor, actions: Tensor, next_frames: Tensor,
                state: LSTMState | None = None) -> RewEndOutput:
        """frames, next_frames: (n, t, c, h, w) in [-1, 1]; actions: (n, t) -> logits for each step."""
        n, t = actions.shape
        x = torch.cat([frames, next_frames], dim=2).flatten(0, 1)
        x = self.encoder(x, self.action_emb(actions.flatten()))
        # The LSTM stays fp32 under autocast: its state carries over the whole dream, and oneDNN has no
        # bf16 LSTM on CPUs without AVX-512 BF16.
        with torch.autocast(x.device.type, enabled=False):
            x, state = self.lstm(x.reshape(n, t, -1).float(), state)
        logits = self.head(x)
        return RewEndOutput(logits[..., :3], logits[..., 3:], state)

    def burn_in(self, context: Tensor, actions: Tensor, state: LSTMState | None = None) -> LSTMState:
        """Run the LSTM over the transitions inside a real context (n, L, c, h, w) with its actions (n, L).

        The L frames hold L - 1 transitions (the last action leads out of the context, into the dream).
        """
        if context.shape[1] < 2:
            return state if state is not None else self.initial_state(context.shape[0], context.device)
        # self(...), not self.forward(...): after module.compile() this runs compiled too
        return self(context[:, :-1], actions[:, :-1], context[:, 1:], state).state

    def loss(self, frames: Tensor, actions: Tensor, next_frames: Tensor, rewards: Tensor, terminated: Tensor,
             mask: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-entropy of reward sign and termination over the real (mask: (n, t)) steps of sequences."""
        out = self(frames, actions, next_frames)
        reward_target = (rewards.sign().long() + 1)[mask]
        end_target = terminated.long()[mask]
        loss_reward = F.cross_entropy(out.reward_logits[mask], reward_target)
        loss_end = F.cross_entropy(out.end_logits[mask], end_target)
        return loss_reward, loss_end
