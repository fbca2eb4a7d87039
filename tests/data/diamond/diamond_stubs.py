"""Stand-ins for DIAMOND's training-only imports, shared by the scripts that run its code to make fixtures.

DIAMOND's package imports wandb, omegaconf, hydra and torcheval at import time for helpers that the
fixture scripts never run; where one is not installed, an empty module takes its place.
"""

from __future__ import annotations

import importlib.util
import sys
import types


def stub_missing_modules() -> None:
    """Stand-ins for DIAMOND's training-only imports that are not installed (none runs in the fixture scripts)."""
    stubs = {
        "wandb": {},
        "omegaconf": {"OmegaConf": type("OmegaConf", (), {}), "DictConfig": dict},
        "hydra": {},
        "hydra.utils": {"instantiate": lambda *args, **kwargs: None},
        "torcheval": {},
        "torcheval.metrics": {},
        # only for the logged confusion matrices of RewEndModel.forward
        "torcheval.metrics.functional": {"multiclass_confusion_matrix": lambda *args, **kwargs: None},
    }
    missing = {name for name in stubs if "." not in name and importlib.util.find_spec(name) is None}
    for name, attributes in stubs.items():
        if name.split(".")[0] not in missing:
            continue
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
