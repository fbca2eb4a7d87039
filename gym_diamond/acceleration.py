"""Speed switches for imagination: bf16 autocast, channels_last, torch.compile and CUDA graphs.

A dream is cheap only when the hardware is used well, but each switch has a price: bf16 changes the
frames slightly, compilation takes a while on the first step and CUDA graphs need fixed batch sizes
on a GPU. So they are explicit and checked, with defaults per device that are always safe::

    model.accelerate(Acceleration(precision="bf16", compile=True, cuda_graphs=True))
    gym.make_vec("DiamondDream/Pong-v0", num_envs=1024, device="cuda", precision="bf16", compile=True)
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from gym_diamond.errors import UserError

PRECISIONS = ("fp32", "bf16")
CPU_PRECISION_VARIABLE = "GYM_DIAMOND_CPU_PRECISION"
"""Set to "fp32" or "bf16" to override the CPU default that :func:`default_precision` reads off the CPU."""
logger = logging.getLogger("gym_diamond")
_logged: set[tuple[str, str, str]] = set()


def cpu_bf16_units() -> str | None:
    """The CPU's native bf16 units: "AMX-BF16", "AVX-512 BF16", or None where bf16 would be emulated.

    Measured on AVX-512 BF16 without AMX (AMD EPYC, Zen 5, 2 vCPUs; benchmarks/README.md): bf16 dreams
    run 1.7-1.8x as fast as fp32 in the paper config and 1.0-1.2x in the light one, at the same fidelity.
    """
    cpu = torch.cpu
    if getattr(cpu, "_is_amx_tile_supported", lambda: False)():
        return "AMX-BF16"
    if getattr(cpu, "_is_avx512_bf16_supported", lambda: False)():
        return "AVX-512 BF16"
    return None


def default_precision(device: torch.device | str) -> str:
    """The dream precision a device computes fastest at no cost in fidelity; logged once per device.

    CUDA: bf16 where supported. CPU: bf16 with native bf16 units (:func:`cpu_bf16_units`), else fp32;
    ``$GYM_DIAMOND_CPU_PRECISION`` overrides it, and every entry point takes ``precision=`` too.
    """
    device = torch.device(device)
    if device.type == "cuda":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        reason = "bf16 supported by the GPU" if precision == "bf16" else "the GPU has no bf16"
    elif device.type == "cpu" and os.environ.get(CPU_PRECISION_VARIABLE):
        precision = os.environ[CPU_PRECISION_VARIABLE]
        if precision not in PRECISIONS:
            raise UserError(f"${CPU_PRECISION_VARIABLE}={precision!r}: expected one of {PRECISIONS}")
        reason = f"${CPU_PRECISION_VARIABLE}"
    elif device.type == "cpu":
        units = cpu_bf16_units()
        precision = "bf16" if units else "fp32"
        reason = f"{units} units" if units else "no native bf16 units (AVX-512 BF16, AMX-BF16): bf16 would be emulated"
    else:
        precision, reason = "fp32", "not a CPU or CUDA device"
    if (str(device), precision, reason) not in _logged:
        _logged.add((str(device), precision, reason))
        logger.info("gym_diamond: %s dreams on %s (%s); pass precision= to choose", precision, device, reason)
    return precision


@dataclass(frozen=True)
class Acceleration:
    """How the world model's networks run; the EDM preconditioning and the sampler always stay fp32.

    precision: "fp32", or "bf16" (autocast of the U-Net and the reward/termination network).
    channels_last: NHWC memory layout for the convolutions (pays on tensor-core GPUs, and with oneDNN on
        CPUs: +15% for the paper model, more for the light one; benchmarks/README.md).
    compile: ``torch.compile`` the whole imagined step (noise is drawn outside, so it stays one graph).
    cuda_graphs: replay the compiled step as a CUDA graph (``mode="reduce-overhead"``); CUDA only,
        with ``compile=True``; each batch size is captured once.

    On a CPU, ``WorldModel.accelerate`` also makes glibc keep freed memory for reuse (see
    :mod:`gym_diamond.cpu_memory`), whatever the switches.
    """

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    cuda_graphs: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise UserError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cuda_graphs and not self.compile:
            raise UserError("cuda_graphs=True needs compile=True: the graphs come from torch.compile's "
                            "reduce-overhead mode")

    @classmethod
    def default_for(cls, device: torch.device | str) -> Acceleration:
        """channels_last in :func:`default_precision` (bf16 on a bf16 GPU or a CPU with native bf16 units,
        else fp32); no compile: it is slow to start."""
        return cls(precision=default_precision(device), channels_last=True)

    def check_device(self, device: torch.device | str) -> None:
        """Raise a clear error for combinations this device cannot run."""
        device = torch.device(device)
        if self.cuda_graphs and device.type != "cuda":
            raise UserError(f"cuda_graphs=True needs a CUDA device, but the world model is on {device}")
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(f"precision='bf16' is not supported by {torch.cuda.get_device_name(device)}")
        if self.precision == "bf16" and device.type == "cpu" and cpu_bf16_units() is None:
            warnings.warn("precision='bf16' on a CPU without native bf16 units (AVX-512 BF16, AMX-BF16): torch "
                          "emulates it, about 9x slower than fp32 (a light denoiser update at batch 32: 17 s against "
                          "1.9 s on one thread of an AVX2-only AMD EPYC); use fp32 here", stacklevel=2)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision == "bf16" else torch.float32

    @contextlib.contextmanager
    def autocast(self, device: torch.device) -> Iterator[None]:
        """Run the networks inside in this precision (a no-op for fp32)."""
        if self.precision == "fp32":
            yield
        else:
            with torch.autocast(device.type, dtype=self.dtype):
                yield
