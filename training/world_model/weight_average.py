"""An exponential moving average of a network's weights: what a run exports when it trains with ``ema_decay``.

Diffusion models are commonly sampled from an average of their recent weights (EDM, Karras et al. 2022, keeps
one): the average moves less than the weights of any one update, so a few thousand updates at a higher learning
rate give a steadier model. DIAMOND trains without one; ``WorldModelTrainingConfig.ema_decay`` turns it on.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from gym_diamond.errors import UserError

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of ``module``'s state (floating-point tensors; others are copied as they are).

    Update n (counting from 0) moves the average towards the weights by ``1 - min(decay, (1 + n) / (10 + n))``,
    so the first updates are not dominated by the initial weights (the warm-up of timm's and ema-pytorch's
    averages).
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise UserError(f"decay={decay} is invalid: expected a value in (0, 1)")
        self.decay = decay
        self.updates = 0
        self.average: dict[str, Tensor] = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def current_decay(self) -> float:
        """The decay the next ``update`` applies."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        """Move the average towards ``module``'s weights after one of its updates."""
        weight = 1 - self.current_decay()
        current = module.state_dict()
        for name, average in self.average.items():
            if average.is_floating_point():
                average.lerp_(current[name].detach(), weight)
            else:
                average.copy_(current[name])
        self.updates += 1

    @torch.no_grad()
    def restart_at(self, module: nn.Module, updates: int) -> None:
        """Make ``module``'s weights the average, as after ``updates`` updates (a warm start from a checkpoint
        that exported an average: its next updates move it at the full decay, not the first updates' warm-up)."""
        current = module.state_dict()
        for name, average in self.average.items():
            average.copy_(current[name])
        self.updates = updates

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates, "average": dict(self.average)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["decay"] != self.decay:
            raise UserError(f"the saved weight average has decay {state['decay']}, not {self.decay}")
        missing = set(self.average) ^ set(state["average"])
        if missing:
            raise UserError(f"the saved weight average does not match the network: keys {sorted(missing)}")
        self.updates = int(state["updates"])
        for name, average in self.average.items():
            average.copy_(state["average"][name])
