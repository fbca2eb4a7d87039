"""stable-baselines3's algorithms by name, for the command lines and for loading a saved SB3 run's model.

Its own module so that loading an agent (``training.agents.evaluate``) and training one (``training.agents.sb3``)
share it without importing each other.
"""

from __future__ import annotations

import difflib

import stable_baselines3
from stable_baselines3.common.base_class import BaseAlgorithm

from gym_diamond.errors import UserError

__all__ = ["algorithm_class"]


def algorithm_class(name: str) -> type[BaseAlgorithm]:
    """An SB3 algorithm by name, case-insensitive (``ppo``, ``A2C``, ``dqn``; sb3-contrib's if installed)."""
    found: dict[str, type[BaseAlgorithm]] = {}
    modules = [stable_baselines3]
    try:
        import sb3_contrib

        modules.append(sb3_contrib)
    except ImportError:
        pass
    for module in modules:
        for attr in dir(module):
            obj = getattr(module, attr)
            if isinstance(obj, type) and issubclass(obj, BaseAlgorithm):
                found.setdefault(attr.lower(), obj)
    if name.lower() not in found:
        close = difflib.get_close_matches(name.lower(), list(found), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown stable-baselines3 algorithm {name!r}{hint} (available: {', '.join(sorted(found))})")
    return found[name.lower()]
