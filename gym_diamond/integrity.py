"""Checks that a file's tensors are the ones that were saved.

safetensors validates a file's header, not its data: a flipped bit, bytes overwritten by an interrupted
copy that kept the size, or a 0xFF-filled block load without a word, and a dream from such weights
shows a flat grey frame. So every file we write carries a sha256 of its tensor data in its metadata,
checked on load, and weights must be finite.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from gym_diamond.errors import UserError

DIGEST_KEY = "tensors_sha256"
_warned: set[str] = set()


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 over the tensors' names, dtypes, shapes and bytes, in name order (independent of file layout)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def verify_tensors(path: str | Path, tensors: Mapping[str, torch.Tensor], expected: str | None) -> None:
    """Raise ValueError naming ``path`` if the tensors do not match the saved digest or are not finite.

    ``expected`` None (a file written before digests existed) is accepted with a warning, once per file.
    """
    if expected is None:
        if str(path) not in _warned:
            _warned.add(str(path))
            warnings.warn(f"{path} was written without a tensor digest (before gym-diamond checked them), so its "
                          "data cannot be verified; saving it again adds one", UserWarning, stacklevel=3)
    elif tensors_digest(tensors) != expected:
        raise UserError(f"{path}: the tensor data does not match the sha256 saved with it: the file is damaged "
                        "(an interrupted copy, a bad disk or a partial download?); restore it from a good copy "
                        "or make it again")
    for name, t in tensors.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UserError(f"{path}: tensor {name!r} holds NaN or infinite values (training diverged, or the "
                            "file was damaged before its digest was written)")
