"""Where training data and compute live: the GPU-resident path on CUDA, the CPU path otherwise.

On CUDA the decoded domains sit in GPU memory and every crop, flip and normalisation runs
there (no DataLoader workers), in channels-last layout under bf16 autocast. On the CPU the
same tensors stay in RAM and compute runs in fp32.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import torch

from symnets_deploy.enums import DataOn

#: Share of the GPU's free memory the decoded domains may fill before they stay in host memory.
GPU_DATA_BUDGET = 0.5


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


def data_location(device: torch.device, needed_bytes: int, requested: DataOn | str = DataOn.auto, free_bytes: Optional[int] = None) -> DataOn:
    """Where the decoded domains live: ``gpu`` (crops made on the GPU) or ``host`` (crops uploaded).

    On the CPU there is one memory and the answer is ``gpu``'s logic (crops made where the data is).
    ``auto`` keeps the data on the GPU when it needs at most ``GPU_DATA_BUDGET`` of the free memory
    (``free_bytes``, measured when not given), so large domains do not run the GPU out of memory.
    """
    requested = DataOn(requested)
    if device.type != "cuda":
        return DataOn.gpu
    if requested is not DataOn.auto:
        return requested
    free = free_bytes if free_bytes is not None else torch.cuda.mem_get_info(device)[0]
    return DataOn.gpu if needed_bytes <= GPU_DATA_BUDGET * free else DataOn.host


class UploadAhead:
    """Batches made in host memory and uploaded on a side stream, one iteration ahead of the compute.

    ``make(iteration)`` returns the iteration's CPU tensors; ``get(iteration)`` returns them on the
    device. While iteration i computes, the crops of i + 1 are made on the CPU and copied from
    pinned memory on a side stream; the compute stream waits for that copy only when it needs it.
    """

    def __init__(self, make: Callable[[int], Sequence[Optional[torch.Tensor]]], device: torch.device, last: int) -> None:
        self.make, self.device, self.last = make, device, last
        # On a CPU there is nothing to upload: the same order of work, made one ahead (what the tests can run).
        self.side = torch.cuda.Stream(device) if device.type == "cuda" else None
        self.pending: dict[int, list[Optional[torch.Tensor]]] = {}

    def _start(self, iteration: int) -> None:
        if self.side is None:
            self.pending[iteration] = list(self.make(iteration))
            return
        tensors = [None if t is None else t.pin_memory() for t in self.make(iteration)]
        with torch.cuda.stream(self.side):
            self.pending[iteration] = [None if t is None else t.to(self.device, non_blocking=True) for t in tensors]

    def get(self, iteration: int) -> list[Optional[torch.Tensor]]:
        if iteration not in self.pending:
            self._start(iteration)
        uploaded = self.pending.pop(iteration)
        if self.side is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_stream(self.side)
            for tensor in uploaded:
                if tensor is not None:
                    tensor.record_stream(current)  # made on the side stream, used on this one
        if iteration + 1 < self.last:
            self._start(iteration + 1)
        return uploaded
