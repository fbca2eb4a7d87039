"""DIAMOND's optimisation: AdamW with weight decay on weights only, linear warm-up, gradient clipping.

As DIAMOND's ``utils.py`` (``configure_opt``, after minGPT, and ``get_lr_sched``) does it:
- weight decay on the weights of linear, convolution and LSTM layers only; never on biases, norms
  or embeddings (decaying a norm's scale or an embedding pulls them towards zero for no reason);
- the learning rate of update i (counting from 0) is ``lr * min(1, i / warmup_steps)``: the first
  update has learning rate 0, as a ``LambdaLR`` stepped after each update gives.
"""

from __future__ import annotations

import torch
from torch import nn

from gym_diamond.errors import UserError

__all__ = ["adamw", "decay_groups", "optimizer_update", "warmup_lr"]

_DECAYED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.LSTMCell, nn.LSTM)
_NOT_DECAYED = (nn.LayerNorm, nn.Embedding, nn.GroupNorm)


def decay_groups(module: nn.Module) -> tuple[list[str], list[str]]:
    """(names of parameters that weight decay applies to, names it does not), each sorted.

    Raises ValueError for a parameter the rule does not place (a weight of another layer type), so a
    new layer cannot silently change the optimisation.
    """
    decay, no_decay = set(), set()
    for module_name, m in module.named_modules():
        for name, _ in m.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if "bias" in name:
                no_decay.add(full)
            elif (name.endswith("weight") or name.startswith("weight_")) and isinstance(m, _DECAYED):
                decay.add(full)
            elif (name.endswith("weight") or name.startswith("weight_")) and isinstance(m, _NOT_DECAYED):
                no_decay.add(full)
    unplaced = {name for name, _ in module.named_parameters()} - decay - no_decay
    if unplaced:
        raise UserError(f"no weight-decay rule for parameters {sorted(unplaced)}: expected weights of "
                        f"{[t.__name__ for t in _DECAYED + _NOT_DECAYED]} or biases")
    return sorted(decay), sorted(no_decay)


def adamw(module: nn.Module, lr: float, eps: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over ``module``'s parameters in DIAMOND's two groups (``decay_groups``)."""
    params = dict(module.named_parameters())
    decay, no_decay = decay_groups(module)
    return torch.optim.AdamW([{"params": [params[n] for n in decay], "weight_decay": weight_decay},
                              {"params": [params[n] for n in no_decay], "weight_decay": 0.0}], lr=lr, eps=eps)


def warmup_lr(lr: float, update: int, warmup_steps: int) -> float:
    """The learning rate of update ``update`` (0 for the first): linear from 0 over ``warmup_steps``."""
    return lr * min(1.0, update / warmup_steps) if warmup_steps > 0 else lr


def optimizer_update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, lr: float, max_grad_norm: float) -> float:
    """Backward ``loss``, clip the gradients' global norm, step at ``lr``; return the norm before clipping."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    grad_norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return float(grad_norm)
