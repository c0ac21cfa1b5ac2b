"""The training loop: plain and readable (torchvision reference style), one function per job.

``train(config)`` adapts G and the head with the SymNets objective (eq. 11) or the source-only
baseline, evaluates Cs and Ct on the whole target domain, and leaves ``last.pt``,
``config.json``, ``metrics.jsonl`` and ``summary.json`` in ``config.out``.
"""

from __future__ import annotations

import json
import signal
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

import torch

from symnets_deploy.card import ModelCard
from symnets_deploy.enums import DataOn, Device, Method
from symnets_deploy.errors import Interrupted, UsageError
from symnets_deploy.evaluation import summarize
from symnets_deploy.preprocess import PreprocessConfig
from symnets_deploy.train import data as D
from symnets_deploy.train.backbones import get_backbone
from symnets_deploy.atomic import atomic_write
from symnets_deploy.train.cache import default_cache_dir, load_or_decode
from symnets_deploy.train.checkpoint import build_model, load_checkpoint, save_checkpoint
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.distributed import World, wrap
from symnets_deploy.train.features import AFTER, BEFORE, write_features
from symnets_deploy.train.interrupt import StopRequest
from symnets_deploy.train.run_folder import check_resume, claim_new_run
from symnets_deploy.train.model import SymNet, deployed_logits
from symnets_deploy.train.placement import DataPath, UploadAhead, data_location, select_data_path
from symnets_deploy.train.schedules import annealed_lr, confusion_weight, progress
from symnets_deploy.train.step import Objective, make_optimizer, make_step, optimizer_state


#: Several ranks agree on an interruption every this many iterations (a collective; one per iteration would sync the GPU).
STOP_CHECK_EVERY = 10

#: The deployed head's predictions on the whole target domain at the end of a run (``Evaluation`` JSON).
TARGET_EVALUATION = "target_evaluation.json"


class Reporter:
    """Receives progress; the CLI shows it with rich, library callers may ignore it."""

    def stage(self, text: str) -> None: ...
    def start(self, total: int, completed: int) -> None: ...
    def advance(self, iteration: int, info: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class TrainResult:
    """What ``summary.json`` holds. Accuracies are fractions in 0..1 of the whole target domain."""

    target_acc_ct: float
    target_acc_cs: float
    target_acc_paired: float
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


@dataclass(frozen=True)
class Trained:
    """A finished run still in memory, for work in the same process (``symnets train --export``).

    Attributes:
        model: the trained network, fp32, eval mode, on the CPU (the weights of ``last.pt``).
        card: the card ``last.pt`` carries (final metrics included).
        images: the whole target domain through the runtime's preprocessing, uint8 [N,3,S,S].
        labels: their class indices [N]; ``paths``: their files, in the same order.
        seconds: wall seconds of each stage so far ("setup", "decode", "train", "evaluate").
    """

    model: SymNet
    card: ModelCard
    images: torch.Tensor
    labels: torch.Tensor
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


def make_card(config: TrainConfig, class_names: tuple[str, ...], metrics: dict[str, Any] | None = None) -> ModelCard:
    """The card every artifact of this run carries, built from the backbone spec (one place)."""
    spec = get_backbone(config.backbone)
    return ModelCard(
        class_names=class_names, input_size=config.image_size, resize_size=D.train_resize(config.image_size),
        mean=spec.mean, std=spec.std, backbone=spec.name, head=config.eval_head, method=config.method,
        source=config.source, target=config.target, dataset=config.dataset or Path(config.data_root).name,
        interpolation=spec.interpolation, train_config=config.to_dict(), metrics=metrics or {},
    )


@torch.no_grad()
def predict_heads(model: SymNet, images: torch.Tensor, batch_size: int, placement: DataPath) -> dict[str, torch.Tensor]:
    """Predicted class of Cs, Ct and the paired head for every image of a (center-cropped) domain, [N] each.

    Always fp32, without autocast: the card's accuracy must be what the fp32 artifact and
    ``predict`` give, not a bf16 approximation of it.
    """
    was_training = model.training
    model.eval()
    predicted: dict[str, list[torch.Tensor]] = {"cs": [], "ct": [], "paired": []}
    k = model.num_classes
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(placement.device, non_blocking=True).float()
        x = x.contiguous(memory_format=placement.memory_format())
        with torch.autocast(placement.device.type, enabled=False):
            logits = model(x).float()
        for head in predicted:
            predicted[head].append(deployed_logits(logits, head, k).argmax(1).cpu())
    model.train(was_training)
    return {head: torch.cat(parts) for head, parts in predicted.items()}


def accuracies(predicted: dict[str, torch.Tensor], labels: torch.Tensor) -> dict[str, float]:
    """``{"acc_cs", "acc_ct", "acc_paired"}`` in 0..1 from ``predict_heads``."""
    return {f"acc_{head}": int((p == labels.cpu()).sum()) / len(labels) for head, p in predicted.items()}


def evaluate(model: SymNet, images: torch.Tensor, labels: torch.Tensor, batch_size: int, placement: DataPath) -> dict[str, float]:
    """Accuracy of Cs, Ct and the paired head on a whole (center-cropped) domain, in 0..1."""
    return accuracies(predict_heads(model, images, batch_size, placement), labels)


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class _NoLog:
    """The metrics log of ranks other than 0: they compute the same records, rank 0 writes them."""

    def write(self, record: dict[str, Any]) -> None: ...


class _MetricsLog:
    """``metrics.jsonl``: one JSON object per line, truncated to the resume point on resume."""

    def __init__(self, path: Path, resume_at: int) -> None:
        self.path = path
        kept = []
        if resume_at and path.exists():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # the last line, torn by a kill in the middle of its write
                if record.get("iteration", 0) <= resume_at:
                    kept.append(line)
        atomic_write(path, lambda tmp: tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8"))

    def write(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def train(
    config: TrainConfig, reporter: Optional[Reporter] = None, *, resume: bool = False, overwrite: bool = False,
    stop_at: Optional[int] = None, on_finished: Optional[Callable[[Trained], None]] = None,
) -> TrainResult:
    """Run (or continue) a training described by ``config``.

    Args:
        config: the resolved config; ``config.out`` is the run folder.
        reporter: progress sink (None: silent).
        resume: continue from ``config.out/last.pt`` at its exact iteration, schedules and RNG
            (refused when it belongs to another run, configuration or set of classes).
        overwrite: a new run may replace the run already in ``config.out`` (else refused).
        stop_at: stop (with a checkpoint) after this many iterations, as an interruption would.
        on_finished: called with the finished run (``Trained``) once ``last.pt`` and
            ``summary.json`` are written; not called when the run stops early.

    Returns:
        The final summary (also written to ``summary.json``).

    Raises:
        UsageError: bad data or device; ArtifactError: unreadable checkpoint on resume.
    """
    reporter = reporter or Reporter()
    clock = time.perf_counter()
    stage_seconds: dict[str, float] = {}
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    world = World.from_env(device.type)
    if world.distributed and device.type == "cuda":
        device = torch.device("cuda", world.local_rank)
    if not world.is_main:
        reporter = Reporter()  # rank 0 alone reports and writes
    placement = select_data_path(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes every iteration: autotune once
    torch.manual_seed(config.seed)

    reporter.stage("scanning domains")
    source, target = D.load_domains(Path(config.data_root), config.source, config.target, config.dataset)
    K = len(source.class_names)
    model = build_model(config, K).to(device, memory_format=placement.memory_format())
    objective = wrap(Objective(model, config), world, device) if world.distributed else None  # SyncBatchNorm on CUDA first
    optimizer = make_optimizer(model, config, fused=device.type == "cuda" and config.cuda_graph and not world.distributed)
    start = 0
    if resume:
        ckpt = load_checkpoint(out / "last.pt")
        run_id = check_resume(out, ckpt, config.to_dict(), source.class_names)  # before weights that may not fit
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        start = int(ckpt["iteration"])
        _restore_rng(ckpt["rng"])
    else:
        run_id = claim_new_run(out, overwrite=overwrite) if world.is_main else None
    run_id = world.broadcast(run_id)
    if world.is_main:
        _write_json(out / "config.json", {**config.to_dict(), "run_id": run_id, "world_size": world.size})
    log = _MetricsLog(out / "metrics.jsonl", start) if world.is_main else _NoLog()

    stage_seconds["setup"] = time.perf_counter() - clock
    reporter.stage(f"decoding {len(source.samples)} source and {len(target.samples)} target images ({placement.name} data path)")
    resize = D.train_resize(config.image_size)
    cache_dir = (Path(config.cache_dir) if config.cache_dir else default_cache_dir()) if config.cache else None
    src_data = load_or_decode(source, resize, threads=config.threads, cache_dir=cache_dir)[0]
    tgt_data = load_or_decode(target, resize, threads=config.threads, cache_dir=cache_dir)[0] if config.method == Method.symnets else None
    needed = sum(d.images.numel() for d in (src_data, tgt_data) if d is not None)
    location = data_location(device, needed, config.data_on)
    if device.type == "cuda":
        reporter.stage(f"decoded images ({needed / 2**30:.2f} GiB) stay in {'GPU' if location is DataOn.gpu else 'pinned host'} memory (--data-on {config.data_on})")
    if location is DataOn.gpu:
        src_data, tgt_data = src_data.to(device), tgt_data.to(device) if tgt_data is not None else None
    # Evaluation decodes the target again through the runtime's own preprocessing (not from the
    # training tensors), so the reported accuracy is exactly what `predict` will see.
    eval_cfg = PreprocessConfig.from_card(make_card(config, source.class_names))
    eval_images, eval_labels = D.decode_eval(target, eval_cfg, config.threads) if world.is_main else (None, None)
    if config.report and start == 0 and world.is_main:
        reporter.stage("features of both domains before adaptation (for the report's t-SNE)")
        write_features(out / BEFORE, model, source, eval_images, eval_labels, eval_cfg, config.eval_batch_size, placement, config.threads)
    samplers = [D.BatchSampler(len(source.samples), config.batch_size, config.seed, 0), D.BatchSampler(len(target.samples), config.batch_size, config.seed, 1)]

    share = world.shard(config.batch_size)  # this rank's rows of every global batch

    def crop(stream: int, it: int, decoded: D.DecodedDomain) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 crops and labels of this rank's share, where ``decoded`` lives."""
        idx = samplers[stream].indices(it)
        x = D.random_crop_flip(decoded.images, decoded.sizes, idx, config.image_size, D.augmentation_generator(config.seed, it, stream), share)
        return x, decoded.labels[D.upload(idx[share], decoded.labels.device)]

    def crops(it: int) -> list[Optional[torch.Tensor]]:
        return [*crop(0, it, src_data), crop(1, it, tgt_data)[0] if tgt_data is not None else None]


    def batch(it: int) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
        x_s, y_s, x_t = ahead.get(it) if ahead is not None else crops(it)
        as_input = lambda x: None if x is None else x.float().contiguous(memory_format=placement.memory_format())  # noqa: E731
        return as_input(x_s), y_s, as_input(x_t)

    def checkpoint(iteration: int, metrics: dict[str, Any]) -> None:
        if world.is_main:
            save_checkpoint(out / "last.pt", {
                "model": model.state_dict(), "optimizer": optimizer_state(optimizer), "iteration": iteration, "world_size": world.size,
                "rng": _rng_state(), "card": make_card(config, source.class_names, metrics).to_dict(), "config": config.to_dict(), "run_id": run_id,
            })
        world.barrier()  # no rank runs ahead of a checkpoint it might have to resume from

    images_per_iter = config.batch_size * (2 if config.method == Method.symnets else 1)
    end = config.iterations if stop_at is None else min(config.iterations, stop_at)
    ahead = UploadAhead(crops, device, end) if location is DataOn.host else None
    stage_seconds["decode"] = time.perf_counter() - clock - stage_seconds["setup"]
    model.train()
    step = make_step(model, optimizer, config, placement, objective)
    processes = f", {world.size} processes" if world.distributed else ""
    reporter.stage(f"training ({step.name} step, {placement.name} data path{processes})")
    reporter.start(config.iterations, start)
    t0, window_t, window_start = time.perf_counter(), time.perf_counter(), start
    sums: dict[str, torch.Tensor] = {}
    eval_metrics: dict[str, float] = {}
    with StopRequest() as stop:
        for it in range(start, end):
            p = progress(it, config.iterations)
            lam = confusion_weight(p, config.lambda_gamma)
            lrs = [annealed_lr(group["lr0"], p, config.lr_alpha, config.lr_beta) for group in optimizer.param_groups]
            x_s, y_s, x_t = batch(it)
            terms = step(x_s, y_s, x_t, lam, lrs)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v
            done = it + 1
            if done % max(1, config.log_every) == 0 or done == end:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                now = time.perf_counter()
                n = done - window_start
                record = {"iteration": done, "lambda": lam, "lr_head": lrs[0], "lr_backbone": lrs[1]}
                record.update({k: float(v) / n for k, v in world.mean(sums).items()})
                record["images_per_s"] = n * images_per_iter / max(now - window_t, 1e-9)
                log.write(record)
                reporter.advance(done, record)
                sums, window_t, window_start = {}, now, done
            if config.eval_every and done % config.eval_every == 0 and done != config.iterations and world.is_main:
                eval_metrics = evaluate(model, eval_images, eval_labels, config.eval_batch_size, placement)
                log.write({"iteration": done, **eval_metrics})
                reporter.advance(done, eval_metrics)
            if config.checkpoint_every and done % config.checkpoint_every == 0 and done != end:
                checkpoint(done, {})
            # Several ranks stop together: they agree every STOP_CHECK_EVERY iterations (a collective).
            asked = stop.signum is not None
            if world.distributed:
                asked = world.any(asked, device) if done % STOP_CHECK_EVERY == 0 or done == end else False
            if asked and done != end:
                checkpoint(done, {})
                reporter.stop()
                signum = stop.signum or signal.SIGTERM
                name = signal.Signals(signum).name
                raise Interrupted(f"{name} at iteration {done} of {config.iterations}: checkpoint saved; continue with: symnets train --resume {out}", signum)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    used = _step_used(step)
    step = objective = None  # DistributedDataParallel goes before its process group (world.close)
    if end < config.iterations:
        checkpoint(end, {})
        reporter.stop()
        world.close()
        return _summary(config, eval_metrics, end - start, seconds, images_per_iter, K, len(target.samples), device, out, used, write=False, world_size=world.size)

    stage_seconds["train"] = time.perf_counter() - t0
    if not world.is_main:  # rank 0 evaluates and writes; the others wait for its results
        world.barrier()
        eval_metrics = world.broadcast(None)
        world.close()
        return _summary(config, eval_metrics, end - start, seconds, images_per_iter, K, len(target.samples), device, out, used, write=False, world_size=world.size)
    reporter.stage("evaluating on the whole target domain")
    predicted = predict_heads(model, eval_images, config.eval_batch_size, placement)
    eval_metrics = accuracies(predicted, eval_labels)
    log.write({"iteration": end, **eval_metrics})
    evaluation = summarize(eval_labels.numpy(), predicted[config.eval_head].numpy(), source.class_names)
    evaluation = replace(evaluation, artifact=f"{out / 'last.pt'} (head {config.eval_head})", data_dir=str(target.root))
    evaluation.save(out / TARGET_EVALUATION)
    result = _summary(config, eval_metrics, end - start, seconds, images_per_iter, K, len(target.samples), device, out, used, write=True, world_size=world.size)
    final = {"target_acc_ct": result.target_acc_ct, "target_acc_cs": result.target_acc_cs}
    checkpoint(end, final)
    world.broadcast(eval_metrics)
    world.close()
    if config.report:
        reporter.stage("features of both domains after adaptation (for the report's t-SNE)")
        write_features(out / AFTER, model, source, eval_images, eval_labels, eval_cfg, config.eval_batch_size, placement, config.threads)
    stage_seconds["evaluate"] = time.perf_counter() - t0 - stage_seconds["train"]
    reporter.stop()
    if on_finished is not None:
        model = model.to("cpu", memory_format=torch.contiguous_format).float().eval()
        on_finished(Trained(
            model, make_card(config, source.class_names, final), eval_images, eval_labels,
            tuple(path for path, _ in target.samples), target.root, stage_seconds,
        ))
    return result


def _step_used(step) -> str:
    fallback = getattr(step, "fallback", None)
    return f"eager (CUDA graph capture failed: {fallback})" if fallback else step.name


def _summary(config, metrics, iterations, seconds, images_per_iter, K, n_target, device, out, step, *, write, world_size=1) -> TrainResult:
    result = TrainResult(
        target_acc_ct=metrics.get("acc_ct", float("nan")), target_acc_cs=metrics.get("acc_cs", float("nan")),
        target_acc_paired=metrics.get("acc_paired", float("nan")), iterations=config.iterations, seconds=round(seconds, 3),
        images_per_s=round(iterations * images_per_iter / max(seconds, 1e-9), 2), method=config.method, ablation=config.ablation,
        backbone=config.backbone, source=config.source, target=config.target, num_classes=K, target_images=n_target,
        device=str(device), out=str(out), step=step, world_size=world_size,
    )
    if write:
        _write_json(out / "summary.json", asdict(result))
    return result
