"""DIAMOND's actor-critic network: the agent that plays a dream, and the real game from the same frames.

As DIAMOND's ``src/models/actor_critic.py`` builds it: a small convolutional encoder, an LSTM cell of 512
units and two zero-initialised linear heads (policy logits, value). It lives beside the world model's
networks so that playing a trained agent needs only ``gym_diamond``; its losses and training in the dream
are ``training.agents``'.

Tensors: frames are float in [-1, 1], channels first, ``(n, 3, 64, 64)``; sequences are batch-first,
``(n, t, ...)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from gym_diamond.config import ACTOR_CRITIC_LEVELS, ActorCriticConfig
from gym_diamond.errors import UserError
from gym_diamond.nn.blocks import GroupNorm, LSTMState, init_lstm

__all__ = ["FRAME_SHAPE", "ActorCritic", "ActorCriticConfig", "LSTMState"]

FRAME_SHAPE = (3, 64, 64)  # the encoder's 4 poolings take 64x64 down to 4x4


class _ResBlock(nn.Module):
    """Pre-activation residual block: ``skip(x) + conv3x3(silu(norm(x)))``.

    One 3x3 convolution keeps the encoder small (it runs at every imagined step); a 1x1 projection on the
    skip path handles a change of width.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm = GroupNorm(in_channels)
        self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.conv(F.silu(self.norm(x)))


class ActorCritic(nn.Module):
    """Recurrent actor-critic on single 64x64 frames (memory is the LSTM's, not a frame stack).

    Encoder: 3x3 conv (3 -> channels[0]), then for each level a residual block and 2x2 max pooling
    (64 -> 32 -> 16 -> 8 -> 4), flattened to ``channels[-1] * 16`` features; an ``LSTMCell`` of ``lstm_dim``
    units; a linear policy head (logits) and a linear value head. Both heads start at zero (weights and
    bias), so a fresh agent is uniformly random and predicts a value of 0.
    """

    def __init__(self, config: ActorCriticConfig) -> None:
        super().__init__()
        if not isinstance(config, ActorCriticConfig):
            raise TypeError(f"ActorCritic expects an ActorCriticConfig, got {type(config).__name__}")
        if config.num_actions is None:
            raise UserError("ActorCriticConfig.num_actions is not set: build the network from "
                            "config.for_actions(num_actions)")
        self.config = config
        ch = config.channels
        layers: list[nn.Module] = [nn.Conv2d(FRAME_SHAPE[0], ch[0], 3, padding=1)]
        for c_in, c_out in zip((ch[0],) + ch[:-1], ch, strict=True):
            layers += [_ResBlock(c_in, c_out), nn.MaxPool2d(2)]
        layers.append(nn.Flatten())
        self.encoder = nn.Sequential(*layers)
        spatial = FRAME_SHAPE[1] >> ACTOR_CRITIC_LEVELS
        self.lstm = nn.LSTMCell(ch[-1] * spatial * spatial, config.lstm_dim)
        init_lstm(self.lstm)  # DIAMOND's (forget-gate bias 1, orthogonal recurrent weights)
        self.policy_head = nn.Linear(config.lstm_dim, config.num_actions)
        self.value_head = nn.Linear(config.lstm_dim, 1)
        for head in (self.policy_head, self.value_head):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    # -- state

    def initial_state(self, n: int, device: torch.device | str | None = None) -> LSTMState:
        """Zero LSTM state ``(h, c)``, each ``(n, lstm_dim)``, on ``device`` (default: the model's)."""
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise UserError(f"initial_state: n={n!r} is invalid: expected an integer >= 0")
        param = next(self.parameters())
        device = param.device if device is None else torch.device(device)
        h = torch.zeros(n, self.config.lstm_dim, device=device, dtype=param.dtype)
        return h, torch.zeros_like(h)

    def _check_state(self, state: LSTMState, n: int) -> None:
        if not (isinstance(state, (tuple, list)) and len(state) == 2):
            raise TypeError(f"state must be a tuple (h, c), got {type(state).__name__}")
        expected = (n, self.config.lstm_dim)
        for name, s in zip(("h", "c"), state, strict=True):
            if not isinstance(s, Tensor) or tuple(s.shape) != expected:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise UserError(f"state {name} has shape {got}: expected {expected}")

    @staticmethod
    def _check_frames(frames: Tensor, leading: str) -> None:
        ndim = len(leading) + 3
        if not isinstance(frames, Tensor):
            raise TypeError(f"frames must be a torch.Tensor, got {type(frames).__name__}")
        if not frames.is_floating_point():
            raise TypeError(f"frames must be float in [-1, 1], got dtype {frames.dtype}")
        if frames.ndim != ndim or tuple(frames.shape[-3:]) != FRAME_SHAPE:
            raise UserError(f"frames have shape {tuple(frames.shape)}: expected ({', '.join(leading)}, "
                            f"{', '.join(map(str, FRAME_SHAPE))})")

    # -- computation

    def encode(self, frames: Tensor) -> Tensor:
        """Convolutional features. ``frames: (n, 3, 64, 64)`` -> ``(n, channels[-1] * 16)``."""
        self._check_frames(frames, "n")
        return self.encoder(frames)

    def _heads(self, features: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        h, c = self.lstm(features, state)
        return self.policy_head(h), self.value_head(h).squeeze(-1), (h, c)

    def forward(self, frames: Tensor, state: LSTMState) -> tuple[Tensor, Tensor, LSTMState]:
        """One step. ``frames: (n, 3, 64, 64)``, ``state: (h, c)`` each ``(n, lstm_dim)``.

        Returns ``logits: (n, num_actions)``, ``value: (n,)`` and the new state.
        """
        features = self.encode(frames)
        self._check_state(state, frames.shape[0])
        return self._heads(features, state)

    def burn_in(self, frames: Tensor, state: LSTMState | None = None) -> LSTMState:
        """Run the LSTM over real context frames before imagination starts from them.

        ``frames: (n, t, 3, 64, 64)``, oldest first; ``state`` defaults to :meth:`initial_state`. The
        encoder runs once on all ``n * t`` frames, the LSTM cell ``t`` times. Returns the state after the
        last frame; the caller then acts from that last frame with :meth:`forward` or :meth:`act` (which
        feed it again, as the first imagined step). Wrap in ``torch.no_grad()`` when no gradient is
        wanted through the context, as DIAMOND does.
        """
        self._check_frames(frames, "nt")
        n, t = frames.shape[:2]
        state = self.initial_state(n, frames.device) if state is None else state
        self._check_state(state, n)
        if t == 0:
            return state
        features = self.encoder(frames.flatten(0, 1)).unflatten(0, (n, t))
        h, c = state
        for i in range(t):
            h, c = self.lstm(features[:, i], (h, c))
        return h, c

    @torch.no_grad()
    def act(self, frames: Tensor, state: LSTMState, *, generator: torch.Generator | None = None,
            greedy: bool = False) -> tuple[Tensor, LSTMState]:
        """Choose actions (no gradient): sample from the policy, or take its argmax with ``greedy=True``.

        ``frames: (n, 3, 64, 64)``; returns ``actions: (n,)`` int64 on the frames' device and the new
        state. ``generator`` (on the same device) makes sampling reproducible.
        """
        logits, _, state = self(frames, state)
        if greedy:
            return logits.argmax(-1), state
        probs = torch.softmax(logits.float(), dim=-1)
        return torch.multinomial(probs, 1, generator=generator).squeeze(-1), state
