"""Where training data and compute live: the GPU-resident path on CUDA, the CPU path otherwise.

On CUDA the decoded domains sit in GPU memory and every crop, flip and normalisation runs
there (no DataLoader workers), in channels-last layout under bf16 autocast. On the CPU the
same tensors stay in RAM and compute runs in fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Optional

import torch


@dataclass(frozen=True)
class DataPath:
    """How a training run places data and runs compute.

    Attributes:
        name: ``"gpu-resident"`` or ``"cpu"``.
        device: where decoded images, the model and the batches live.
        channels_last: use NHWC memory format (faster convolutions on tensor cores).
        autocast_dtype: mixed-precision dtype, or None for fp32.
    """

    name: str
    device: torch.device
    channels_last: bool
    autocast_dtype: Optional[torch.dtype]

    def autocast(self, *, cache_enabled: bool = True):
        """The autocast context of this path (a no-op in fp32); a CUDA graph capture needs ``cache_enabled=False``."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=cache_enabled)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def select_data_path(device: torch.device) -> DataPath:
    """The GPU-resident path for a CUDA device, the CPU path for anything else."""
    if device.type == "cuda":
        return DataPath("gpu-resident", device, channels_last=True, autocast_dtype=torch.bfloat16)
    return DataPath("cpu", device, channels_last=False, autocast_dtype=None)
