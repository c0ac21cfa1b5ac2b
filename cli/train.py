"""``symnets train``: adapt a classifier from a labeled source domain to an unlabeled target."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli.main import app, handle_errors
from symnets_deploy.enums import Ablation, Device, Head, Method
from symnets_deploy.train.config import DEFAULTS as D


@app.command()
@handle_errors
def train(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, help="Labeled source domain: a folder name under --data-root (e.g. amazon). Required unless --resume."),
    target: Optional[str] = typer.Option(None, help="Unlabeled target domain: a folder name under --data-root (e.g. webcam). Required unless --resume."),
    data_root: Optional[Path] = typer.Option(None, help="Dataset folder laid out as <domain>/<class>/<image>. Required unless --resume."),
    dataset: Optional[str] = typer.Option(None, help="Check against a preset: office31, office_caltech10, office_home, imageclef."),
    backbone: str = typer.Option(D["backbone"], help="Feature extractor G: efficientnet_lite0 (ImageNet weights ship offline), resnet50 (paper), tiny (random init, tests)."),
    weights: Optional[Path] = typer.Option(None, help="Pretrained backbone state-dict file (default: the backbone's own ImageNet weights)."),
    method: Method = typer.Option(Method(D["method"]), help="symnets (the paper) or source-only (baseline: G + K-way head, cross-entropy on source)."),
    ablation: Ablation = typer.Option(Ablation(D["ablation"]), help="Paper Table 4: none, no-ct-loss, no-entropy, no-confusion, domain-confusion-only."),
    head: Head = typer.Option(Head(D["head"]), help="Classifier the run deploys and reports: ct (target, paper default), cs, paired."),
    iterations: int = typer.Option(D["iterations"], help="Training iterations (each: B source + B target images)."),
    batch_size: int = typer.Option(D["batch_size"], help="B, images per domain per iteration."),
    lr: float = typer.Option(D["lr"], help="Head learning rate lr0 (annealed as lr0 / (1 + 10 p)^0.75)."),
    backbone_lr_mult: Optional[float] = typer.Option(None, help="G's lr as a multiple of --lr (default 0.1 when pretrained, 1.0 from scratch)."),
    momentum: float = typer.Option(D["momentum"], help="SGD momentum (Nesterov when > 0)."),
    weight_decay: float = typer.Option(D["weight_decay"], help="SGD weight decay."),
    lr_alpha: float = typer.Option(D["lr_alpha"], help="lr annealing alpha: lr_p = lr0 / (1 + alpha p)^beta."),
    lr_beta: float = typer.Option(D["lr_beta"], help="lr annealing beta."),
    lambda_gamma: float = typer.Option(D["lambda_gamma"], help="Confusion weight schedule: lambda_p = 2 / (1 + exp(-gamma p)) - 1."),
    image_size: Optional[int] = typer.Option(None, help="Crop side S (default: the backbone's, 224); resize is round(S*256/224)."),
    device: Device = typer.Option(Device(D["device"]), help="auto picks CUDA when present (bf16 autocast there, fp32 on CPU)."),
    seed: int = typer.Option(D["seed"], help="Random seed (sampling, crops, init)."),
    out: Optional[Path] = typer.Option(None, help="Run folder: last.pt, config.json, metrics.jsonl, summary.json (default: a new runs/<date-time>, linked as runs/latest)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out (otherwise a new run refuses a folder that holds one)."),
    resume: Optional[Path] = typer.Option(None, help="Continue the run in this folder at its last checkpoint with its saved config; only a larger --iterations may be added."),
    eval_every: int = typer.Option(D["eval_every"], help="Evaluate Cs/Ct on the whole target domain every N iterations (0: only at the end)."),
    checkpoint_every: int = typer.Option(D["checkpoint_every"], help="Write last.pt every N iterations (0: only at the end)."),
    log_every: int = typer.Option(D["log_every"], help="Write a metrics.jsonl record every N iterations."),
    threads: int = typer.Option(D["threads"], help="Image decoding threads (0: one per CPU core)."),
    cache: bool = typer.Option(D["cache"], help="Keep decoded domains on disk so the next run skips decoding (invalidated when any file changes)."),
    cuda_graph: bool = typer.Option(D["cuda_graph"], "--cuda-graph/--no-cuda-graph", help="On CUDA, capture the whole iteration as one CUDA graph (eager if the capture fails); the CPU always runs eagerly."),
    export: Optional[str] = typer.Option(None, "--export", help="After training, export and check these variants into the run folder, in this process: onnx, fp16, int8, trt, trt-fp16 (comma-separated, e.g. onnx,fp16). A failed check exits 6; the trained run is kept."),
    cache_dir: Optional[Path] = typer.Option(None, help="Decoded-image cache folder (default: $SYMNETS_CACHE_DIR or ~/.cache/symnets-deploy/decoded)."),
) -> None:
    """Train a SymNet (or the source-only baseline) and write the run folder; with --export, also its checked artifacts."""
    import time

    from symnets_deploy.cli.progress import TrainProgress, console
    from symnets_deploy.errors import UsageError
    from symnets_deploy.train.config import TrainConfig, resumed_config
    from symnets_deploy.train.run_folder import new_run_folder, point_latest
    from symnets_deploy.train.trainer import train as run_training

    started = time.perf_counter()
    exports = _export_plan(export)  # names and TensorRT checked before any folder or training
    # data_root is stored absolute: export reads it back for its check images, maybe from another folder.
    values = dict(
        source=source, target=target, data_root=str(data_root.resolve()) if data_root else None, dataset=dataset, backbone=backbone,
        weights=str(weights) if weights else D["weights"], method=method.value, ablation=ablation.value, head=head.value,
        iterations=iterations, batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult, momentum=momentum,
        weight_decay=weight_decay, lr_alpha=lr_alpha, lr_beta=lr_beta, lambda_gamma=lambda_gamma, image_size=image_size,
        device=device.value, seed=seed, out=str(out or new_run_folder()), eval_every=eval_every, checkpoint_every=checkpoint_every,
        log_every=log_every, threads=threads, cache=cache, cache_dir=str(cache_dir) if cache_dir else None, cuda_graph=cuda_graph,
    )
    if resume is not None:
        # Typer (and the click it wraps or vendors) says where each value came from; defaults are not "given".
        given = {name: values[name] for name in values if getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}
        config = resumed_config(resume, given)
        console.log(f"resuming {resume} with its saved config" + (f" for {config.iterations} iterations" if "iterations" in given else ""))
    else:
        missing = [f"--{name.replace('_', '-')}" for name in ("source", "target", "data_root") if values[name] is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or --resume RUN to continue a run)")
        config = TrainConfig(**values)
        if out is None:
            Path(config.out).mkdir(parents=True)
            point_latest(Path(config.out))  # so that `--resume runs/latest` finds an interrupted run
    if overwrite and resume is not None:
        raise UsageError("--overwrite starts a new run; --resume continues one: give only one")
    finished = []
    result = run_training(config, TrainProgress(), resume=resume is not None, overwrite=overwrite, on_finished=finished.append)
    typer.echo(
        f"{result.source} -> {result.target} ({result.method}, {result.backbone}): target acc Ct {100 * result.target_acc_ct:.2f}%, "
        f"Cs {100 * result.target_acc_cs:.2f}% | {result.iterations} it in {result.seconds:.1f}s, {result.images_per_s:.1f} img/s | {result.out}"
    )
    if exports and finished:
        _export_after_training(exports, finished[0], Path(config.out), started)


def _export_plan(text: Optional[str]):
    """``(names, environment)`` of ``--export``, validated now; None without it."""
    if not text:
        return None
    from symnets_deploy.export.variants import parse_variants, preflight

    names = parse_variants(text)
    return names, preflight(names)


def _export_after_training(exports, trained, out: Path, started: float) -> None:
    """Export and check each variant, print one summary, and exit 6 if any check failed."""
    import time

    from symnets_deploy.cli.progress import console
    from symnets_deploy.errors import EquivalenceError
    from symnets_deploy.export.variants import check_images, export_trained

    names, env = exports
    images = check_images(trained.images, trained.labels, trained.paths, trained.target_folder)
    outcomes = export_trained(trained.model, trained.card, images, names, out, env, stage=console.log)
    stages = {**trained.seconds, **{f"export {o.name}": o.seconds for o in outcomes}}
    typer.echo("stages: " + ", ".join(f"{name} {sec:.1f}s" for name, sec in stages.items()) + f" | total {time.perf_counter() - started:.1f}s")
    for o in outcomes:
        if o.produced is not None:
            accuracy = (o.produced.accuracy or {}).get(o.produced.report.comparisons[0].candidate)
            score = f", accuracy {100 * accuracy['accuracy']:.2f}% ({accuracy['correct']}/{accuracy['images']})" if accuracy else ""
            typer.echo(f"{o.name}: {o.path} passed on {o.produced.report.num_images} images{score} | report {o.produced.report_path}")
        else:
            typer.echo(f"{o.name}: FAILED: {o.error}")
    failed = [o.name for o in outcomes if o.error is not None]
    if failed:
        raise EquivalenceError(f"{', '.join(failed)}: equivalence check failed (see above); the trained run and the other artifacts are kept in {out}")
