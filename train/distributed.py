"""Data-parallel training across processes: set-up, batch sharding and the agreements between ranks.

``torchrun --nproc-per-node N -m symnets_deploy.cli train ...`` (or ``symnets train --nproc N``)
starts N processes; ``World.from_env`` joins them (NCCL on GPUs, gloo on CPUs). Each rank takes a
fixed share of every iteration's global batch: the batch (indices, crop offsets, flips) is a
function of seed and iteration only, so a run's data does not depend on the number of processes,
and rank r takes rows ``shard(B, r, N)``. Gradients are averaged by DistributedDataParallel.
Only rank 0 writes files. A single process is a world of one: nothing here does anything then.
"""

from __future__ import annotations

import gc
import os
import traceback
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Optional

import torch
import torch.distributed as dist

from symnets_deploy.errors import UsageError
from symnets_deploy.host import launched_rank, launched_world_size

#: How long a rank waits in a collective for the others. Rank 0 alone decodes the evaluation data,
#: evaluates and writes the t-SNE features while the other ranks wait in the next collective; on a
#: large domain that outlasts NCCL's default of 10 minutes (whose watchdog then kills the run).
#: A rank that dies is noticed by the launcher at once, so a long wait only delays a true hang.
COLLECTIVE_TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and reports progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @staticmethod
    def from_env(device_type: str) -> "World":
        """Join the process group torchrun describes in the environment (a world of one without it).

        Args:
            device_type: ``"cuda"`` (NCCL, one GPU per local rank) or ``"cpu"`` (gloo).
        """
        size = launched_world_size()
        if size <= 1:
            return World()
        world = World(launched_rank(), size, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            if device_type == "cuda":
                torch.cuda.set_device(world.local_rank)
            dist.init_process_group("nccl" if device_type == "cuda" else "gloo", timeout=COLLECTIVE_TIMEOUT)
        return world

    def shard(self, total: int) -> slice:
        """Rows of a global batch of ``total`` that this rank takes (equal shares, in rank order)."""
        if total % self.size:
            raise UsageError(f"--batch-size {total} must be a multiple of the number of processes ({self.size})")
        share = total // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def mean(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The average over ranks of each value (for logging losses of the global batch)."""
        if not self.distributed or not values:
            return values
        keys = sorted(values)
        stacked = torch.stack([values[k].detach().float().reshape(()) for k in keys])
        dist.all_reduce(stacked)
        return {k: v / self.size for k, v in zip(keys, stacked)}

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on one (so all stop at the same iteration)."""
        if not self.distributed:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item() > 0)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def gather(self, obj: Any) -> Optional[list[Any]]:
        """Every rank's ``obj`` in rank order on rank 0 (which writes them), None on the others."""
        if not self.distributed:
            return [obj]
        box: Optional[list[Any]] = [None] * self.size if self.is_main else None
        dist.gather_object(obj, box, dst=0)
        return box

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (e.g. the run id)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Leave the process group once every rank got here (no collective still in flight)."""
        if self.distributed and dist.is_initialized():
            gc.collect()  # a DistributedDataParallel dropped by the caller must not outlive its group
            dist.barrier()
            dist.destroy_process_group()

    @staticmethod
    def abandon(exc: Optional[BaseException] = None) -> None:
        """Leave the process group without waiting for the other ranks: after an exception or an interruption.

        A barrier there could wait for a rank that is gone (or stopped for another reason). Leaving
        at all matters: a group still open at exit is torn down by destructors, which abort the
        process ('terminate called ...'). So does a DistributedDataParallel that outlives its group
        (its reducer holds the group): the frames of ``exc``'s traceback, which hold the failed run,
        are cleared first. NCCL communicators are aborted rather than finalised, as finalising waits
        for collectives that a lost peer will never join; gloo closes its sockets.
        """
        if not dist.is_initialized():
            return
        if exc is not None:
            traceback.clear_frames(exc.__traceback__)  # the message stays; the run's objects go
            gc.collect()
        abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
        if dist.get_backend() == "nccl" and abort is not None:
            abort()
        else:
            dist.destroy_process_group()


#: What gloo and NCCL say when the process at the other end of a collective is gone.
_PEER_GONE = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "NCCL communicator was aborted", "remote process exited")


def lost_peer(exc: BaseException) -> str:
    """The first line of ``exc`` when it says another training process went away (else "").

    Collectives raise a plain ``RuntimeError`` (gloo) or a ``DistBackendError`` (NCCL) then; the
    process that died is named by the launcher, so the others need no traceback.
    """
    if launched_world_size() <= 1:
        return ""
    text = str(exc)
    if isinstance(exc, getattr(dist, "DistError", ())) or any(marker in text for marker in _PEER_GONE):
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        return first.split("] ", 1)[-1][:160]  # without gloo's source-file prefix
    return ""


def wrap(objective: torch.nn.Module, world: World, device: torch.device) -> torch.nn.Module:
    """``objective`` under DistributedDataParallel when there are several ranks.

    On CUDA the backbone's BatchNorm layers become SyncBatchNorm first: source and target go
    through G in separate forward passes, and each pass then normalises over that domain's whole
    global batch, exactly as the single-process run does. SyncBatchNorm runs on GPUs only; under
    gloo on CPUs each rank normalises over its own share (B / N images per domain), so a CPU run
    with several processes follows the single-process one closely, not exactly.
    """
    if not world.distributed:
        return objective
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        objective = torch.nn.SyncBatchNorm.convert_sync_batchnorm(objective)
        return DistributedDataParallel(objective, device_ids=[device.index])
    return DistributedDataParallel(objective)
