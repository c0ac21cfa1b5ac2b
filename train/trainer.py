"""The training loop: plain and readable (torchvision reference style), one function per job.

``train(config)`` adapts G and the head with the SymNets objective (eq. 11) or the source-only
baseline on the labeled source images minus a held-out split, evaluates (``train.evaluate``:
label-free scores always, target accuracy only where the target has class folders) every
``eval_every`` iterations and at the end, and leaves ``last.pt``, ``config.json``,
``metrics.jsonl``, ``summary.json`` and ``source_split.json`` in ``config.out``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from symnets_deploy.card import ModelCard
from symnets_deploy.enums import DataOn, Device, Method, TargetLabels
from symnets_deploy.errors import Interrupted, TrainingDiverged, UsageError
from symnets_deploy.host import launched_rank, launched_world_size
from symnets_deploy.evaluation import summarize
from symnets_deploy.preprocess import PreprocessConfig
from symnets_deploy.run_files import CHECKPOINT, CONFIG, FEATURES_AFTER, FEATURES_BEFORE, LABELED, METRICS, SUMMARY, TARGET_EVALUATION, UNLABELED, target_labels_line
from symnets_deploy.train import data as domains
from symnets_deploy.train.cache import default_cache_dir, load_or_decode
from symnets_deploy.train.checkpoint import build_model, load_checkpoint, make_card, restore_rng
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.distributed import World, wrap
from symnets_deploy.train.evaluate import (
    EvalResult, card_metrics, default_eval_every, load_eval_data, run_warnings,
)
from symnets_deploy.train.features import write_features
from symnets_deploy.train.loop import Reporter, RunState, images_per_iteration, run_loop
from symnets_deploy.train.model import SymNet
from symnets_deploy.train.placement import data_location, select_data_path
from symnets_deploy.train.interrupt import StopRequest
from symnets_deploy.train.run_folder import (
    MetricsLog, check_resume, check_split, claim_new_run, run_lock, undo_start, unfinished_start, write_json,
)
from symnets_deploy.train.step import Objective, load_optimizer_state, make_optimizer

__all__ = ["Reporter", "TrainResult", "Trained", "make_card", "resolve_device", "train"]



@dataclass(frozen=True)
class TrainResult:
    """What ``summary.json`` holds. Accuracies are fractions in 0..1 of the whole target domain,
    None when the target has no labels; ``label_free`` needs none (``symnets_deploy.label_free``)."""

    target_acc_ct: Optional[float]
    target_acc_cs: Optional[float]
    target_acc_paired: Optional[float]
    iterations: int
    seconds: float
    images_per_s: float
    method: str
    ablation: str
    backbone: str
    source: str
    target: str
    num_classes: int
    target_images: int
    device: str
    out: str
    step: str = "eager"  # "cuda-graph", or why its capture failed and the run went on eagerly
    world_size: int = 1  # training processes (torchrun / --nproc)
    target_labels: str = UNLABELED  # "class folders" (used for evaluation only) or "none"
    source_val_images: int = 0
    label_free: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    evaluation_seconds: float = 0.0  # of ``seconds``, spent in evaluations during the loop
    eval_every: int = 0  # iterations between evaluations (0: at the end only)
    class_names: list[str] = field(default_factory=list)  # the K classes in index order (the source's class folders)


@dataclass(frozen=True)
class Trained:
    """A finished run still in memory, for work in the same process (``symnets train --export``).

    Attributes:
        model: the trained network, fp32, eval mode, on the CPU (the weights of ``last.pt``).
        card: the card ``last.pt`` carries (final metrics included).
        images: the whole target domain through the runtime's preprocessing, uint8 [N,3,S,S].
        labels: their class indices [N], None for an unlabeled target; ``paths``: their files, in the same order.
        seconds: wall seconds of each stage so far ("setup", "decode", "train", "evaluate").
    """

    model: SymNet
    card: ModelCard
    images: torch.Tensor
    labels: Optional[torch.Tensor]
    paths: tuple[Path, ...]
    target_folder: Path
    seconds: dict[str, float]


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; asking for CUDA without one is a usage error."""
    if name == Device.cuda.value and not torch.cuda.is_available():
        raise UsageError("--device cuda was asked for, but torch sees no CUDA GPU")
    if name == Device.cpu.value or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda")


def _open_run(config: TrainConfig, reporter: Reporter, resume: bool, overwrite: bool, stop: StopRequest, claimed: list) -> RunState:
    """Device, processes, domains and split, model and optimizer; the run folder claimed or its checkpoint restored.

    ``claimed`` gets True once a new run has claimed its folder (what a failed start then removes).
    """
    out = Path(config.out)
    if resume and not (out / CHECKPOINT).exists() and unfinished_start(out):
        raise UsageError(f"{out}: the run stopped before its first checkpoint, so there is nothing to resume; start it again without --resume")
    device = resolve_device(config.device)
    world = World.from_env(device.type)
    world.shard(config.batch_size)  # a batch the processes cannot share is refused before any data is read
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    if not world.is_main:
        reporter = Reporter()  # rank 0 alone reports and writes
    placement = select_data_path(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every iteration: autotune once
    torch.manual_seed(config.seed)
    reporter.stage("scanning domains")
    source, target = domains.load_domains(Path(config.data_root), config.source, config.target, config.dataset,
                                    ignore_target_labels=config.target_labels == TargetLabels.ignore)
    train_source, source_val = domains.split_source(source, config.source_val, config.seed)
    model = build_model(config, len(source.class_names)).to(device, memory_format=placement.memory_format())
    objective = wrap(Objective(model, config), world, device) if world.distributed else None  # SyncBatchNorm on CUDA first
    optimizer = make_optimizer(model, config, fused=device.type == "cuda" and config.cuda_graph and not world.distributed)
    run = RunState(config, reporter, out, device, world, placement, source, train_source, source_val, target, model, objective, optimizer, stop=stop)
    if resume:
        ckpt = load_checkpoint(out / CHECKPOINT)
        run.run_id = check_resume(out, ckpt, config.to_dict(), source.class_names)  # before weights that may not fit
        check_split(out, source, source_val)
        model.load_state_dict(ckpt["model"])
        load_optimizer_state(optimizer, ckpt["optimizer"])  # with the SGD implementation chosen above, not the saved one
        run.start = int(ckpt["iteration"])
        lost = restore_rng(ckpt["rng"], world.rank, world.size, device)
        if lost:  # rank 0 alone says it (the others report nowhere)
            reporter.warn(f"{out / CHECKPOINT}: the random generators are restored only in part ({lost}): "
                          "the run continues, but not bit for bit as it would have without the interruption")
    else:
        run.run_id = claim_new_run(out, overwrite=overwrite) if world.is_main else None
        claimed.append(True)
    run.run_id = world.broadcast(run.run_id)
    if world.is_main:
        write_json(out / CONFIG, {**config.to_dict(), "run_id": run.run_id, "world_size": world.size})
        if not resume:
            check_split(out, source, source_val, record=True)
    run.log = MetricsLog(out / METRICS, run.start) if world.is_main else MetricsLog.discard()
    reporter.stage(target_labels_line(target.labeled) + (f" (--target-labels {config.target_labels})" if config.target_labels == TargetLabels.ignore else ""))
    reporter.stage(f"source: {len(train_source.samples)} images to train on, {len(source_val.samples)} held out (--source-val {config.source_val})")
    run.eval_every = config.eval_every if config.eval_every is not None else default_eval_every(
        config.iterations, images_per_iteration(config), len(target.samples) + len(source_val.samples))
    reporter.stage(f"label-free scores every {run.eval_every} iterations and at the end" if run.eval_every else "label-free scores at the end")
    return run


def _decode(run: RunState):
    """Decoded training domains where they will live, the evaluation data (rank 0), and the t-SNE features before."""
    config, placement = run.config, run.placement
    run.reporter.stage(f"decoding {len(run.train_source.samples)} source and {len(run.target.samples)} target images ({placement.name} data path)")
    resize = domains.train_resize(config.image_size)
    cache_dir = (Path(config.cache_dir) if config.cache_dir else default_cache_dir()) if config.cache else None
    warned: set[str] = set()

    def warn_once(text: str) -> None:  # one cache problem, one line (not one per domain)
        if not warned:
            run.reporter.warn(text)
        warned.add(text)

    src, tgt = _decode_once_per_machine(run, resize, cache_dir, warn_once)
    needed = sum(d.images.numel() for d in (src, tgt) if d is not None)
    location = data_location(run.device, needed, config.data_on)
    if run.device.type == "cuda":
        where = "GPU memory" if location is DataOn.gpu else "host memory (each iteration's crops go up through pinned buffers)"
        run.reporter.stage(f"decoded images ({needed / 2**30:.2f} GiB) stay in {where} (--data-on {config.data_on})")
    if location is DataOn.gpu:
        src, tgt = src.to(run.device), tgt.to(run.device) if tgt is not None else None
    # Evaluation decodes again through the runtime's own preprocessing (not from the training
    # tensors), so every number it reports is exactly what `predict` will see.
    if run.world.is_main:
        run.eval_data = load_eval_data(run.source, run.source_val, run.target, PreprocessConfig.from_card(run.card()), config.threads)
        if config.report and run.start == 0:
            run.reporter.stage("features of both domains before adaptation (for the report's t-SNE)")
            write_features(run.out / FEATURES_BEFORE, run.model, run.source, run.eval_data.target, run.eval_data.target_labels,
                           PreprocessConfig.from_card(run.card()), config.eval_batch_size, placement, config.threads)
    return src, tgt, location


def _decode_once_per_machine(run: RunState, resize: int, cache_dir: Optional[Path], warn: Callable[[str], None]) -> tuple[domains.DecodedDomain, Optional[domains.DecodedDomain]]:
    """The training domains, decoded by one process per machine and mapped from its cache file by all.

    Every process reads the images through a memory map of the same file, so a machine holds one
    copy however many processes train (the case ``--data-on host`` is for: data larger than a GPU).
    Without ``--cache`` the file is a temporary one, removed as soon as every process has mapped it.
    """
    config, world = run.config, run.world
    wanted = [run.train_source] + ([run.target] if config.method == Method.symnets else [])
    folder = cache_dir if cache_dir is not None or not world.distributed else Path(tempfile.gettempdir()) / f"symnets-decoded-{run.run_id}"

    def load() -> list[domains.DecodedDomain]:
        return [load_or_decode(domain, resize, threads=config.threads, cache_dir=folder, warn=warn)[0] for domain in wanted]

    first = world.local_rank == 0
    decoded = load() if first else []  # the first process of each machine decodes and writes the file
    world.barrier()
    decoded = decoded or load()  # the others find it written and map it
    if cache_dir is None and world.distributed:
        world.barrier()  # every process holds its map: the file's name may go (its pages stay until unmapped)
        if first:
            shutil.rmtree(folder, ignore_errors=True)
    return decoded[0], decoded[1] if len(decoded) > 1 else None


def _finish(run: RunState) -> tuple[EvalResult, list[str]]:
    """The final evaluation (rank 0): metrics record, target confusion matrix where labels exist, warnings."""
    config = run.config
    run.reporter.stage("evaluating on the whole target domain and the held-out source images")
    result = run.evaluate(config.iterations)
    if run.eval_data.labeled:
        evaluation = summarize(run.eval_data.target_labels.numpy(), result.predicted[config.eval_head], run.source.class_names)
        replace(evaluation, artifact=f"{run.out / CHECKPOINT} (head {config.eval_head})", data_dir=str(run.target.root)).save(run.out / TARGET_EVALUATION)
    warnings = run_warnings(result, run.log.evaluations)
    for warning in warnings:
        run.reporter.warn(warning)
    return result, warnings


def train(
    config: TrainConfig, reporter: Optional[Reporter] = None, *, resume: bool = False, overwrite: bool = False,
    stop_at: Optional[int] = None, on_finished: Optional[Callable[[Trained], None]] = None,
) -> TrainResult:
    """Run (or continue) a training described by ``config``.

    Args:
        config: the resolved config; ``config.out`` is the run folder.
        reporter: progress sink (None: silent).
        resume: continue from ``config.out/last.pt`` at its exact iteration, schedules and RNG
            (refused when it belongs to another run, configuration, set of classes or source split).
        overwrite: a new run may replace the run already in ``config.out`` (else refused).
        stop_at: stop (with a checkpoint) after this many iterations, as an interruption would.
        on_finished: called with the finished run (``Trained``) once ``last.pt`` and
            ``summary.json`` are written; not called when the run stops early.

    Returns:
        The final summary (also written to ``summary.json``); an early stop's carries the latest evaluation.

    Raises:
        UsageError: bad data or device; ArtifactError: unreadable checkpoint on resume.
    """
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: is a file, not a folder; --out names the run's folder")
    was_empty = not out.exists() or not any(out.iterdir())
    out.mkdir(parents=True, exist_ok=True)
    main = launched_rank() == 0
    parent = os.getppid() if launched_world_size() > 1 else None  # workers stop when their launcher dies
    claimed: list = []
    started = False  # the folder is ours (locked): only then may a failure undo what the start wrote
    try:
        with run_lock(out, main), StopRequest(parent) as stop:
            started = True
            final = _train(config, reporter or Reporter(), resume, overwrite, stop_at, on_finished, stop, claimed)
    except BaseException as exc:
        World.abandon(exc)  # a failed or interrupted process leaves its process group too, without a barrier
        # A diverged run keeps its metrics.jsonl to read; a next run in the folder replaces it (claim_new_run).
        if started and main and not resume and not (out / CHECKPOINT).exists() and not isinstance(exc, TrainingDiverged):
            undo_start(out, claimed=bool(claimed), was_empty=was_empty)
        raise
    if stop.signum is not None:  # came after the last iteration: the run finished and is saved
        raise Interrupted(f"{stop.reason()} after the last iteration: the run is complete and saved in {out}; "
                          f"its export and report were skipped (symnets export {out}, symnets report {out})", stop.signum)
    return final


def _train(config: TrainConfig, reporter: Reporter, resume: bool, overwrite: bool, stop_at: Optional[int],
           on_finished: Optional[Callable[[Trained], None]], stop: StopRequest, claimed: list) -> TrainResult:
    """``train`` with the folder locked and signals watched."""
    clock = time.perf_counter()
    run = _open_run(config, reporter, resume, overwrite, stop, claimed)
    run.seconds["setup"] = time.perf_counter() - clock
    src, tgt, location = _decode(run)
    run.seconds["decode"] = time.perf_counter() - clock - run.seconds["setup"]
    end = config.iterations if stop_at is None else min(config.iterations, stop_at)
    t0 = time.perf_counter()
    step = run_loop(run, src, tgt, location, end)
    loop_seconds = time.perf_counter() - t0
    run.objective = None  # DistributedDataParallel goes before its process group (world.close)
    summary = dict(step=step, loop_seconds=loop_seconds, loop_eval_seconds=run.eval_seconds, trained=end - run.start)
    if end < config.iterations:
        run.checkpoint(end, {})
        run.reporter.stop()
        run.world.close()
        return _summary(run, run.last_eval, [], **summary)
    run.seconds["train"] = time.perf_counter() - t0
    if not run.world.is_main:  # rank 0 evaluates and writes; the others wait for its results
        run.checkpoint(config.iterations, {})  # rank 0 writes it (with every rank's generator states)
        final = run.world.broadcast(None)
        run.world.close()
        return TrainResult(**final)
    result, warnings = _finish(run)
    final = _summary(run, result, warnings, **summary)
    write_json(run.out / SUMMARY, asdict(final))
    metrics = card_metrics(result, config.iterations, warnings)
    run.checkpoint(config.iterations, metrics)
    run.world.broadcast(asdict(final))
    run.world.close()
    if config.report:
        run.reporter.stage("features of both domains after adaptation (for the report's t-SNE)")
        write_features(run.out / FEATURES_AFTER, run.model, run.source, run.eval_data.target, run.eval_data.target_labels,
                       PreprocessConfig.from_card(run.card()), config.eval_batch_size, run.placement, config.threads)
    run.seconds["evaluate"] = time.perf_counter() - t0 - run.seconds["train"]
    run.reporter.stop()
    if on_finished is not None:
        model = run.model.to("cpu", memory_format=torch.contiguous_format).float().eval()
        on_finished(Trained(model, run.card(metrics), run.eval_data.target, run.eval_data.target_labels,
                            tuple(path for path, _ in run.target.samples), run.target.root, run.seconds))
    return final


def _summary(run: RunState, result: Optional[EvalResult], warnings: list[str], *, step: str, loop_seconds: float,
             loop_eval_seconds: float, trained: int) -> TrainResult:
    config = run.config
    accuracies = result.accuracies if result is not None else {}
    images_per_iter = images_per_iteration(config)
    return TrainResult(
        target_acc_ct=accuracies.get("acc_ct"), target_acc_cs=accuracies.get("acc_cs"), target_acc_paired=accuracies.get("acc_paired"),
        iterations=config.iterations, seconds=round(loop_seconds, 3),
        images_per_s=round(trained * images_per_iter / max(loop_seconds - loop_eval_seconds, 1e-9), 2), method=config.method,
        ablation=config.ablation, backbone=config.backbone, source=config.source, target=config.target, num_classes=len(run.source.class_names),
        target_images=len(run.target.samples), device=str(run.device), out=str(run.out), step=step, world_size=run.world.size,
        target_labels=LABELED if run.target.labeled else UNLABELED, source_val_images=len(run.source.samples) - len(run.train_source.samples),
        label_free=result.scores if result is not None else {}, warnings=list(warnings), evaluation_seconds=round(loop_eval_seconds, 3),
        eval_every=run.eval_every, class_names=list(run.source.class_names),
    )
