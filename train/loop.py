"""The iteration loop of a training run, and the state the run's stages share.

``run_loop`` runs iterations with their metrics records, evaluations (``RunState.evaluate``:
labeled and label-free, kept weights for ``symnets select``), checkpoints and the stop agreement
of several processes; ``train.trainer`` sets the run up before it and finishes it after.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from symnets_deploy.card import ModelCard
from symnets_deploy.enums import DataOn, Method
from symnets_deploy.errors import Interrupted, TrainingDiverged
from symnets_deploy.run_files import CHECKPOINT
from symnets_deploy.train import data as domains
from symnets_deploy.train.checkpoint import make_card, rng_record, rng_state, save_checkpoint
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.distributed import World
from symnets_deploy.train.evaluate import EvalData, EvalResult, card_metrics, evaluate
from symnets_deploy.train.interrupt import StopRequest
from symnets_deploy.train.model import SymNet
from symnets_deploy.train.placement import DataPath, UploadAhead
from symnets_deploy.train.run_folder import kept_path
from symnets_deploy.train.schedules import annealed_lr, confusion_weight, progress
from symnets_deploy.train.step import make_step, optimizer_state
from symnets_deploy.train.threads import ThreadFit


class Reporter:
    """Receives progress; the CLI shows it with rich, library callers may ignore it."""

    def stage(self, text: str) -> None: ...
    def warn(self, text: str) -> None: ...
    def start(self, total: int, completed: int) -> None: ...
    def advance(self, iteration: int, info: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


#: Several ranks agree on an interruption every this many iterations (a collective; one per iteration would sync the GPU).
STOP_CHECK_EVERY = 10


def images_per_iteration(config: TrainConfig) -> int:
    """Images one iteration trains on: B source (+ B target for SymNets)."""
    return config.batch_size * (2 if config.method == Method.symnets else 1)


@dataclass
class RunState:
    """Everything one training run holds between its stages."""

    config: TrainConfig
    reporter: Reporter
    out: Path
    device: torch.device
    world: World
    placement: DataPath
    source: domains.Domain
    train_source: domains.Domain
    source_val: domains.Domain
    target: domains.Domain
    model: SymNet
    objective: Optional[torch.nn.Module]
    optimizer: torch.optim.SGD
    eval_every: int = 0
    run_id: Optional[str] = None
    start: int = 0
    log: Any = None
    eval_data: Optional[EvalData] = None
    last_eval: Optional[EvalResult] = None
    eval_seconds: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    stop: StopRequest = field(default_factory=StopRequest)  # signals and a lost launcher (train.interrupt)

    def card(self, metrics: dict[str, Any] | None = None) -> ModelCard:
        return make_card(self.config, self.source.class_names, metrics)

    def checkpoint(self, iteration: int, metrics: dict[str, Any]) -> None:
        """``last.pt`` (rank 0), then every rank waits: none runs ahead of a checkpoint it might resume from.

        Every rank calls it: rank 0 gathers each rank's generator states to save them with the weights.

        Raises:
            TrainingDiverged: a weight is NaN or infinite; the previous ``last.pt`` is kept.
        """
        # A loss is computed before its update, so weights can blow up an iteration before any loss shows it.
        if not all(bool(torch.isfinite(t).all()) for t in self.model.state_dict().values() if t.is_floating_point()):
            _stop_if_diverged(self, {"(weights)": float("nan")}, iteration)
        generators = self.world.gather(rng_state(self.device))
        if self.world.is_main:
            save_checkpoint(self.out / CHECKPOINT, {
                "model": self.model.state_dict(), "optimizer": optimizer_state(self.optimizer), "iteration": iteration,
                "world_size": self.world.size, "rng": rng_record(generators), "card": self.card(metrics).to_dict(),
                "config": self.config.to_dict(), "run_id": self.run_id,
            })
        self.world.barrier()

    def evaluate(self, iteration: int) -> EvalResult:
        """Evaluate (rank 0), log the record, and keep the weights when ``keep_every`` asks for this iteration."""
        clock = time.perf_counter()
        result = evaluate(self.model, self.eval_data, self.config.eval_batch_size, self.placement)
        self.log.write(result.record(iteration))
        self.reporter.advance(iteration, result.accuracies)
        keep = self.config.keep_every
        if keep and (iteration % keep == 0 or iteration == self.config.iterations):
            save_checkpoint(kept_path(self.out, iteration), {
                "model": self.model.state_dict(), "iteration": iteration, "card": self.card(card_metrics(result, iteration)).to_dict(),
                "config": self.config.to_dict(), "run_id": self.run_id, "kept": True,
            })
        self.last_eval = result
        self.eval_seconds += time.perf_counter() - clock
        return result


def _stop_if_diverged(run: RunState, losses: dict[str, Any], iteration: int) -> None:
    """Stop the run when a loss is NaN or infinite, before anything is logged or saved from it.

    Checked where the loop syncs anyway (each metrics record, each checkpoint), not per iteration.
    """
    bad = {k: v for k, v in losses.items() if isinstance(v, float) and not math.isfinite(v)}
    if not bad:
        return
    run.reporter.stop()
    key, value = next(iter(bad.items()))
    what = "the weights are no longer finite" if key == "(weights)" else f"loss {key} is {value}"
    kept = f"the last checkpoint with finite weights is {run.out / CHECKPOINT}" if (run.out / CHECKPOINT).exists() else "no checkpoint was written"
    raise TrainingDiverged(
        f"training diverged: {what} by iteration {iteration} of {run.config.iterations} (--lr {run.config.lr}); "
        f"{kept}; try a lower --lr"
    )


def run_loop(run: RunState, src: domains.DecodedDomain, tgt: Optional[domains.DecodedDomain], location: DataOn, end: int) -> str:
    """Iterations ``run.start`` to ``end``: steps, metrics records, evaluations, checkpoints, the stop agreement.

    Returns:
        The step that ran ("eager", "cuda-graph", or why the capture failed).
    """
    config, world, placement, log, optimizer = run.config, run.world, run.placement, run.log, run.optimizer
    samplers = [domains.BatchSampler(len(src), config.batch_size, config.seed, 0), domains.BatchSampler(len(run.target.samples), config.batch_size, config.seed, 1)]
    share = world.shard(config.batch_size)  # this rank's rows of every global batch

    def crop(stream: int, it: int, decoded: domains.DecodedDomain) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 crops and labels of this rank's share, where ``decoded`` lives."""
        idx = samplers[stream].indices(it)
        x = domains.random_crop_flip(decoded.images, decoded.sizes, idx, config.image_size, domains.augmentation_generator(config.seed, it, stream), share,
                                     flip=config.flip, zoom=config.zoom)
        return x, decoded.labels[domains.upload(idx[share], decoded.labels.device)]

    def crops(it: int) -> list[Optional[torch.Tensor]]:
        return [*crop(0, it, src), crop(1, it, tgt)[0] if tgt is not None else None]

    ahead = UploadAhead(crops, run.device, end) if location is DataOn.host else None

    def batch(it: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x_s, y_s, x_t = ahead.get(it) if ahead is not None else crops(it)
        as_input = lambda x: None if x is None else x.float().contiguous(memory_format=placement.memory_format())  # noqa: E731
        return as_input(x_s), y_s, as_input(x_t)

    images_per_iter = images_per_iteration(config)
    run.model.train()
    step = make_step(run.model, optimizer, config, placement, run.objective)
    processes = f", {world.size} processes" if world.distributed else ""
    run.reporter.stage(f"training ({step.name} step, {placement.name} data path{processes})")
    run.reporter.start(config.iterations, run.start)
    window_t, window_start = time.perf_counter(), run.start
    stop = run.stop
    stop.deferred = True  # from here on, a signal is answered with a checkpoint
    threads = ThreadFit() if run.device.type == "cpu" else None  # one thread while other jobs crowd the cores
    if threads is not None:
        threads.update()
    for it in range(run.start, end):
        p = progress(it, config.iterations)
        lam = confusion_weight(p, config.lambda_gamma)
        lrs = [annealed_lr(group["lr0"], p, config.lr_alpha, config.lr_beta) for group in optimizer.param_groups]
        step(*batch(it), lam, lrs)  # its loss terms are summed in step.sums (inside the graph when captured)
        done = it + 1
        if done % max(1, config.log_every) == 0 or done == end:
            if threads is not None:
                threads.update()
            if run.device.type == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            n = done - window_start
            record = {"iteration": done, "lambda": lam, "lr_head": lrs[0], "lr_backbone": lrs[1]}
            record.update({k: float(v) / n for k, v in world.mean(step.sums.take()).items()})
            _stop_if_diverged(run, record, done)  # every rank sees the same means: all stop together
            record["images_per_s"] = n * images_per_iter / max(now - window_t, 1e-9)
            log.write(record)
            run.reporter.advance(done, record)
            window_t, window_start = now, done
        due = (run.eval_every and done % run.eval_every == 0) or (config.keep_every and done % config.keep_every == 0)
        if due and done != config.iterations and world.is_main:
            before = time.perf_counter()
            run.evaluate(done)
            window_t += time.perf_counter() - before  # evaluation time stays out of images/s
        if config.checkpoint_every and done % config.checkpoint_every == 0 and done != end:
            run.checkpoint(done, {})
        # Several ranks stop together: they agree every STOP_CHECK_EVERY iterations (a collective).
        asked = stop.asked
        if world.distributed:
            asked = world.any(asked, run.device) if done % STOP_CHECK_EVERY == 0 or done == end else False
        if asked and done != end:
            run.checkpoint(done, {})
            run.reporter.stop()
            raise Interrupted(f"{stop.reason()} at iteration {done} of {config.iterations}: checkpoint saved; continue with: symnets train --resume {run.out}", stop.exit_signal())
    if threads is not None:
        threads.restore()
    if run.device.type == "cuda":
        torch.cuda.synchronize()
    fallback = getattr(step, "fallback", None)
    return f"eager (CUDA graph capture failed: {fallback})" if fallback else step.name
