"""One training iteration: eager (CPU, and the fallback), or captured as one CUDA graph (issue 10).

A small network at batch 64 with two forward passes per step is launch-bound on a large GPU: the
kernels are short, and Python issues them one by one. ``GraphedStep`` records the whole iteration
(both forward passes, both losses, backward and the SGD update) once with ``torch.cuda.graph``
and replays it, so an iteration costs one launch. What changes between iterations lives in
device tensors the graph reads: the batch (copied into static buffers), the learning rates and
lambda (copied from pinned host memory without waiting). The optimizer is
``torch.optim.SGD(fused=True)``, whose kernel takes the learning rate as a tensor: no host
synchronisation, nothing to re-capture when the schedule moves. The loss terms of the metrics
records are summed inside the graph too (``LossSums``), so nothing runs outside it per iteration.

Both steps compute the same function (``training_step``); tests compare them on the CPU, where
``GraphedStep`` runs its body without capturing.
"""

from __future__ import annotations

import warnings
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from symnets_deploy.enums import Method
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.losses import classifier_loss, feature_loss
from symnets_deploy.train.model import SymNet
from symnets_deploy.train.placement import DataPath

#: Eager iterations before the capture: they allocate the momentum buffers and let cuDNN pick its
#: algorithms for every shape, which must not happen inside a capture. They are real iterations.
WARMUP_ITERATIONS = 3

Terms = dict[str, torch.Tensor]


def make_optimizer(model: SymNet, config: TrainConfig, *, fused: bool = False) -> torch.optim.SGD:
    """SGD with two groups: head at lr, G at lr * backbone_lr_mult (paper 4.1).

    ``fused``: the single-kernel implementation, which takes a tensor learning rate (the graphed step).
    """
    groups = [
        {"params": model.head_parameters(), "lr0": config.lr},
        {"params": model.backbone_parameters(), "lr0": config.lr * config.backbone_lr_mult},
    ]
    for g in groups:
        g["lr"] = g["lr0"]
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, nesterov=config.momentum > 0, weight_decay=config.weight_decay,
        fused=fused or None,
    )


#: The param-group keys that choose how SGD runs, not what it computes: they follow the process
#: that loads a checkpoint, never the one that wrote it (``load_optimizer_state``).
IMPLEMENTATION_FLAGS = ("fused", "foreach", "capturable", "differentiable")


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict(state)``, keeping the implementation ``make_optimizer`` chose here.

    ``load_state_dict`` restores every saved param-group key, ``fused``/``foreach`` included: a
    checkpoint of a ``--nproc`` or ``--no-cuda-graph`` run would give a one-process CUDA run the
    foreach SGD, whose tensor learning rate needs a host sync, so its graph capture would fail.
    """
    chosen = [{k: group[k] for k in IMPLEMENTATION_FLAGS if k in group} for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, chosen):
        group.update(flags)


class LossSums:
    """The loss terms summed over the iterations since the last ``take`` (for the metrics records).

    One device vector added to in place, so in a captured step the sum is part of the graph. The
    first ``add`` allocates, so it must not be captured (the warm-up iterations run first).
    """

    def __init__(self) -> None:
        self.keys: tuple[str, ...] = ()
        self.total: Optional[torch.Tensor] = None

    def add(self, terms: Terms) -> None:
        values = torch.stack([terms[k].float() for k in self.keys or sorted(terms)])
        if self.total is None:
            self.keys, self.total = tuple(sorted(terms)), values
        else:
            self.total.add_(values)

    def take(self) -> Terms:
        """The sums so far (device tensors, no sync), then start again from zero."""
        if self.total is None:
            return {}
        taken = self.total.clone()
        self.total.zero_()
        return dict(zip(self.keys, taken.unbind()))


def host_to_device(values: Sequence[float], device: torch.device) -> torch.Tensor:
    """``values`` as a float32 tensor that can be copied to ``device`` without a host sync.

    A copy from pageable memory makes the host wait for the stream (CUDA stages it through a
    pinned buffer); from pinned memory with ``non_blocking=True`` it is queued like a kernel.
    The pinned tensor may be freed as soon as the copy is queued: PyTorch's caching host
    allocator records an event for each non-blocking copy from a pinned block and hands the
    block out again only after that event completed (ATen/cuda/CachingHostAllocator.h), so a
    later iteration's values never overwrite memory a queued copy has still to read: the
    allocator double-buffers for us. On the CPU there is nothing to pin.
    """
    host = torch.tensor(values, dtype=torch.float32)
    return host.pin_memory() if device.type == "cuda" else host


def losses(model: SymNet, x_s: torch.Tensor, y_s: torch.Tensor, x_t: Optional[torch.Tensor], lam: float | torch.Tensor, config: TrainConfig) -> tuple[torch.Tensor, Terms]:
    """The loss to minimise in one iteration, and its terms (detached).

    SymNets: the classifier loss sees detached features (so it reaches the head only), the
    feature loss sees detached head weights (so it reaches G only); one backward of their sum
    fills disjoint gradients. Source and target go through G in separate passes (per-domain BN).
    """
    if config.method == Method.source_only:
        loss = F.cross_entropy(model(x_s).float(), y_s)
        return loss, {"source_task": loss.detach(), "total": loss.detach()}
    f_s, f_t = model.features(x_s), model.features(x_t)
    cls = classifier_loss(model.head(f_s.detach()).float(), model.head(f_t.detach()).float(), y_s, config.ablation)
    feat = feature_loss(model.classify_frozen(f_s).float(), model.classify_frozen(f_t).float(), y_s, lam, config.ablation)
    terms = {f"cls_{k}": v.detach() for k, v in cls.items()}
    terms.update({f"feat_{k}": v.detach() for k, v in feat.items()})
    return cls["total"] + feat["total"], terms


def training_step(model: SymNet, x_s: torch.Tensor, y_s: torch.Tensor, x_t: Optional[torch.Tensor], lam: float | torch.Tensor, config: TrainConfig) -> Terms:
    """Forward and backward of one iteration (``losses``, then backward); returns the detached loss terms."""
    total, terms = losses(model, x_s, y_s, x_t, lam, config)
    total.backward()
    return terms


class Objective(torch.nn.Module):
    """``losses`` as a module: what DistributedDataParallel wraps, so one forward gives one backward
    whose gradients are averaged over ranks (the SymNet's own ``forward`` is not the whole objective)."""

    def __init__(self, model: SymNet, config: TrainConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, x_s: torch.Tensor, y_s: torch.Tensor, x_t: Optional[torch.Tensor], lam: float | torch.Tensor) -> tuple[torch.Tensor, Terms]:
        return losses(self.model, x_s, y_s, x_t, lam, self.config)


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict:
    """``optimizer.state_dict()`` with plain-float learning rates, whichever step set them."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        group["lr"] = float(group["lr"])
    return state


class EagerStep:
    """The iteration as PyTorch runs it op by op: the CPU path, ``--no-cuda-graph``, several processes, and the fallback.

    Args:
        objective: ``Objective(model, config)``, or it under DistributedDataParallel
            (``distributed.wrap``); None builds the plain one.
    """

    name = "eager"

    def __init__(self, model: SymNet, optimizer: torch.optim.SGD, config: TrainConfig, placement: DataPath, objective: Optional[torch.nn.Module] = None) -> None:
        self.model, self.optimizer, self.config, self.placement = model, optimizer, config, placement
        self.objective = objective if objective is not None else Objective(model, config)
        self.sums = LossSums()

    def __call__(self, x_s: torch.Tensor, y_s: torch.Tensor, x_t: Optional[torch.Tensor], lam: float, lrs: Sequence[float]) -> Terms:
        """One iteration; returns its loss terms (also added to ``self.sums``)."""
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self.placement.autocast():
            total, terms = self.objective(x_s, y_s, x_t, lam)
        total.backward()
        self.optimizer.step()
        self.sums.add(terms)
        return terms


class GraphedStep:
    """The iteration captured once as a CUDA graph and replayed (see the module docstring).

    The first ``warmup`` calls run eagerly, through the same tensors the graph will read; the
    next call captures and replays. Should the capture fail (an operation that cannot be
    captured), that iteration reruns eagerly and training goes on eagerly, after one warning.

    Args:
        capture: False runs the graph's body eagerly every time (the CPU, where tests compare it
            with ``EagerStep``).
    """

    name = "cuda-graph"

    def __init__(self, model: SymNet, optimizer: torch.optim.SGD, config: TrainConfig, placement: DataPath, *,
                 warmup: int = WARMUP_ITERATIONS, capture: bool = True) -> None:
        self.model, self.optimizer, self.config, self.placement = model, optimizer, config, placement
        if warmup < 1:
            raise ValueError("a captured step needs at least one warm-up iteration (momentum buffers and sums are allocated there)")
        self.warmup, self.capture, self.calls = warmup, capture, 0
        self.sums = LossSums()
        self.scalars: Optional[torch.Tensor] = None  # [lambda, lr per group], made at the first call
        self.inputs: Optional[list[Optional[torch.Tensor]]] = None
        self.graph: Optional[torch.cuda.CUDAGraph] = None
        self.outputs: Terms = {}
        self.fallback: Optional[str] = None  # why the capture failed, once it did

    def _body(self) -> Terms:
        x_s, y_s, x_t = self.inputs
        # The autocast weight cache would hold tensors made during the capture: off (PyTorch's rule).
        with self.placement.autocast(cache_enabled=False):
            terms = training_step(self.model, x_s, y_s, x_t, self.scalars[0], self.config)
        self.optimizer.step()
        self.sums.add(terms)
        return terms

    def _eager(self) -> Terms:
        self.optimizer.zero_grad(set_to_none=True)
        return self._body()

    def _capture(self) -> Terms:
        try:
            torch.cuda.synchronize(self.placement.device)
            graph = torch.cuda.CUDAGraph()
            self.optimizer.zero_grad(set_to_none=True)  # the captured backward allocates .grad in the graph's pool
            with torch.cuda.graph(graph):
                outputs = self._body()
        except Exception as exc:  # noqa: BLE001 - any capture failure: keep training, eagerly
            self.fallback = " ".join(str(exc).split())[:200]
            warnings.warn(f"CUDA graph capture failed ({self.fallback}); training continues eagerly", RuntimeWarning, stacklevel=3)
            self.optimizer.zero_grad(set_to_none=True)
            if self.placement.device.type == "cuda":
                torch.cuda.synchronize(self.placement.device)
            return self._eager()  # a capture runs nothing: this iteration is still to do
        self.graph, self.outputs = graph, outputs
        graph.replay()
        return outputs

    def __call__(self, x_s: torch.Tensor, y_s: torch.Tensor, x_t: Optional[torch.Tensor], lam: float, lrs: Sequence[float]) -> Terms:
        """One iteration; returns its loss terms (once captured, the graph's outputs, overwritten by the next replay)."""
        if self.inputs is None:
            self.inputs = [None if x is None else torch.empty_like(x) for x in (x_s, y_s, x_t)]
            # lambda and one learning rate per group in one device vector: one copy per iteration.
            self.scalars = torch.zeros(1 + len(self.optimizer.param_groups), device=x_s.device)
            for index, group in enumerate(self.optimizer.param_groups, start=1):
                group["lr"] = self.scalars[index]
        self.scalars.copy_(host_to_device([lam, *lrs], self.scalars.device), non_blocking=True)
        for static, x in zip(self.inputs, (x_s, y_s, x_t)):
            if x is not None:
                static.copy_(x)
        self.calls += 1
        if self.graph is not None:
            self.graph.replay()
            return self.outputs
        if not self.capture or self.fallback is not None:
            return self._eager()
        if self.calls <= self.warmup:
            return self._warm_up()
        return self._capture()

    def _warm_up(self) -> Terms:
        # On a side stream, as PyTorch's whole-network capture recipe does: lazily created
        # per-stream state (library handles, workspaces) is then not created inside the capture.
        if self.placement.device.type != "cuda":
            return self._eager()
        side, current = torch.cuda.Stream(self.placement.device), torch.cuda.current_stream(self.placement.device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            terms = self._eager()
        current.wait_stream(side)
        return terms


def make_step(model: SymNet, optimizer: torch.optim.SGD, config: TrainConfig, placement: DataPath, objective: Optional[torch.nn.Module] = None) -> EagerStep | GraphedStep:
    """``GraphedStep`` on CUDA in one process unless ``config.cuda_graph`` is off; ``EagerStep`` otherwise.

    ``objective``: the DistributedDataParallel-wrapped objective of a multi-process run (eager:
    its gradient all-reduce is not captured).
    """
    if placement.device.type == "cuda" and config.cuda_graph and objective is None:
        return GraphedStep(model, optimizer, config, placement)
    return EagerStep(model, optimizer, config, placement, objective)
