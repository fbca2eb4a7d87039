"""Speed switches for imagination: bf16 autocast, channels_last, torch.compile and CUDA graphs.

A dream is cheap only when the hardware is used well, but each switch has a price: bf16 changes the
frames slightly, compilation takes a while on the first step and CUDA graphs need fixed batch sizes
on a GPU. So they are explicit and checked, with defaults per device that are always safe::

    model.accelerate(Acceleration(precision="bf16", compile=True, cuda_graphs=True))
    gym.make_vec("DiamondDream/Pong-v0", num_envs=1024, device="cuda", precision="bf16", compile=True)
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

PRECISIONS = ("fp32", "bf16")


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
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.cuda_graphs and not self.compile:
            raise ValueError("cuda_graphs=True needs compile=True: the graphs come from torch.compile's "
                             "reduce-overhead mode")

    @classmethod
    def default_for(cls, device: torch.device | str) -> Acceleration:
        """fp32 channels_last on CPU; bf16 channels_last on a GPU that supports bf16 (no compile: it is slow to
        start). bf16 is never a CPU default: without AVX-512 BF16 it is emulated and far slower than fp32."""
        device = torch.device(device)
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return cls(precision="bf16", channels_last=True)
        return cls(channels_last=True)

    def check_device(self, device: torch.device | str) -> None:
        """Raise a clear error for combinations this device cannot run."""
        device = torch.device(device)
        if self.cuda_graphs and device.type != "cuda":
            raise ValueError(f"cuda_graphs=True needs a CUDA device, but the world model is on {device}")
        if self.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision='bf16' is not supported by {torch.cuda.get_device_name(device)}")

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
