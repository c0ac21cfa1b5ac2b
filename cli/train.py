"""``symnets train``: adapt a classifier from a labeled source domain to an unlabeled target."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors, is_rank_zero
from symnets_deploy.enums import Ablation, DataOn, Device, Head, Method, TargetLabels
from symnets_deploy.host import in_launched_group, launched_world_size
from symnets_deploy.train.config import DEFAULTS

DATA, MODEL, OPTIMISATION, SCHEDULE, OUTPUT, ADVANCED = "Data", "Model", "Optimisation", "Schedule", "Output", "Advanced"


@command()
@handle_errors
def train(
    ctx: typer.Context,
    source: Optional[str] = typer.Option(None, help="Labeled source domain, a folder under --data-root.", rich_help_panel=DATA),
    target: Optional[str] = typer.Option(None, help="Target domain, a folder under --data-root: any images (labels not needed).", rich_help_panel=DATA),
    data_root: Optional[Path] = typer.Option(None, help="Folder holding <source>/<class>/<image> and <target>/.", rich_help_panel=DATA),
    source_val: float = typer.Option(DEFAULTS["source_val"], metavar="FRACTION", help="Source images held out per class for label-free scores (0: train on all).", rich_help_panel=DATA),
    target_labels: TargetLabels = typer.Option(TargetLabels(DEFAULTS["target_labels"]), help="Target class folders: use (to evaluate only) or ignore.", rich_help_panel=DATA),
    dataset: Optional[str] = typer.Option(None, help="Check names against a preset: office31, office_caltech10, office_home, imageclef.", rich_help_panel=DATA),
    backbone: str = typer.Option(DEFAULTS["backbone"], help="Feature extractor G: efficientnet_lite0, resnet50 or tiny.", rich_help_panel=MODEL),
    weights: Optional[Path] = typer.Option(None, help="Backbone state-dict file (default: its ImageNet weights).", rich_help_panel=MODEL),
    method: Method = typer.Option(Method(DEFAULTS["method"]), help="symnets (the paper) or source-only (baseline).", rich_help_panel=MODEL),
    ablation: Ablation = typer.Option(Ablation(DEFAULTS["ablation"]), metavar="NAME", help="Paper Table 4: none, no-ct-loss, no-entropy, no-confusion, domain-confusion-only.", rich_help_panel=MODEL),
    head: Head = typer.Option(Head(DEFAULTS["head"]), help="Classifier the run deploys and reports.", rich_help_panel=MODEL),
    image_size: Optional[int] = typer.Option(None, help="Crop side S (default: the backbone's: 224; tiny 16).", rich_help_panel=MODEL),
    flip: Optional[bool] = typer.Option(None, "--flip/--no-flip", help="Mirror half of the training crops (default: the backbone's: yes; tiny no, for digits and other glyphs).", rich_help_panel=MODEL),
    zoom: Optional[float] = typer.Option(None, metavar="FACTOR", help="Zoom into training crops by up to FACTOR, 1 to 4 (default: the backbone's: 1, none; tiny 1.5).", rich_help_panel=MODEL),
    iterations: int = typer.Option(DEFAULTS["iterations"], help="Iterations of B source + B target images.", rich_help_panel=OPTIMISATION),
    batch_size: int = typer.Option(DEFAULTS["batch_size"], help="B, images per domain per iteration.", rich_help_panel=OPTIMISATION),
    lr: Optional[float] = typer.Option(DEFAULTS["lr"], help="Head learning rate lr0 (default: the backbone's: 0.01, the paper's; tiny 0.03).", rich_help_panel=OPTIMISATION),
    backbone_lr_mult: Optional[float] = typer.Option(None, help="G's lr / head lr (default 0.1 pretrained, 1 from scratch).", rich_help_panel=OPTIMISATION),
    momentum: float = typer.Option(DEFAULTS["momentum"], help="SGD momentum (Nesterov when > 0).", rich_help_panel=OPTIMISATION),
    weight_decay: float = typer.Option(DEFAULTS["weight_decay"], help="SGD weight decay.", rich_help_panel=OPTIMISATION),
    seed: int = typer.Option(DEFAULTS["seed"], help="Random seed (sampling, crops, init).", rich_help_panel=OPTIMISATION),
    lr_alpha: float = typer.Option(DEFAULTS["lr_alpha"], help="lr_p = lr0 / (1 + alpha p)^beta.", rich_help_panel=SCHEDULE),
    lr_beta: float = typer.Option(DEFAULTS["lr_beta"], help="beta of the lr annealing.", rich_help_panel=SCHEDULE),
    lambda_gamma: float = typer.Option(DEFAULTS["lambda_gamma"], help="lambda_p = 2 / (1 + exp(-gamma p)) - 1.", rich_help_panel=SCHEDULE),
    out: Optional[Path] = typer.Option(None, help="Run folder (default: new runs/<date-time>, linked as runs/latest).", rich_help_panel=OUTPUT),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace the run already in --out.", rich_help_panel=OUTPUT),
    resume: Optional[Path] = typer.Option(None, help="Continue this run folder with its saved options.", rich_help_panel=OUTPUT),
    export: Optional[str] = typer.Option(None, "--export", metavar="VARIANTS", help="Then export and check: onnx, fp16, int8, trt, trt-fp16 (comma-separated).", rich_help_panel=OUTPUT),
    report: bool = typer.Option(DEFAULTS["report"], help="Write report/ (plots, report.html) at the end; needs the \\[report] extra.", rich_help_panel=OUTPUT),
    eval_every: Optional[int] = typer.Option(DEFAULTS["eval_every"], metavar="N", help="Score every N iterations (default: up to 10 times, within 5% of the compute; 0: at the end).", rich_help_panel=OUTPUT),
    checkpoint_every: int = typer.Option(DEFAULTS["checkpoint_every"], help="Write last.pt every N iterations (0: at the end).", rich_help_panel=OUTPUT),
    keep_every: int = typer.Option(DEFAULTS["keep_every"], metavar="N", help="Keep the weights of every N-th iteration for 'symnets select'.", rich_help_panel=OUTPUT),
    log_every: int = typer.Option(DEFAULTS["log_every"], help="Write a metrics.jsonl record every N iterations.", rich_help_panel=OUTPUT),
    device: Device = typer.Option(Device(DEFAULTS["device"]), help="auto: CUDA when present (bf16 there, fp32 on CPU).", rich_help_panel=ADVANCED),
    nproc: int = typer.Option(1, "--nproc", min=1, metavar="N", help="Train with N processes (torchrun; one GPU each on CUDA).", rich_help_panel=ADVANCED),
    cuda_graph: bool = typer.Option(DEFAULTS["cuda_graph"], help="On CUDA, run each iteration as one CUDA graph.", rich_help_panel=ADVANCED),
    data_on: DataOn = typer.Option(DataOn(DEFAULTS["data_on"]), help="Decoded images on the GPU, or in host memory (auto: GPU if they fit).", rich_help_panel=ADVANCED),
    threads: int = typer.Option(DEFAULTS["threads"], help="Image decoding threads (0: one per CPU core).", rich_help_panel=ADVANCED),
    cache: bool = typer.Option(DEFAULTS["cache"], help="Keep decoded domains on disk for the next run.", rich_help_panel=ADVANCED),
    cache_dir: Optional[Path] = typer.Option(None, help="Decoded-image cache folder (default: under ~/.cache).", rich_help_panel=ADVANCED),
) -> None:
    """Adapt a classifier from a labeled source domain to an unlabeled target domain.

    The target needs no labels: its images are found recursively. Class folders that are the source's are used to evaluate only (--target-labels ignore: not at all); every output says which. A share of the source images (--source-val) is held out of training, and every evaluation writes label-free scores (held-out source accuracy, target confidence, entropy, class shares, Cs/Ct agreement, cluster V-measure) that need no target label.

    Writes the run folder: last.pt (weights, optimizer, RNG and model card), config.json, metrics.jsonl, summary.json, source_split.json and, with the \\[report] extra, report/report.html. --keep-every N keeps weights in checkpoints/ for 'symnets select'. --resume RUN continues exactly where RUN stopped; Ctrl-C saves a checkpoint first. --export onnx,fp16 then writes model.onnx and model.fp16.onnx into the run folder, each checked as 'symnets export' checks it.

    The learning rate anneals as lr0 / (1 + alpha p)^beta and the confusion weight rises as 2 / (1 + exp(-gamma p)) - 1, with p the training progress (paper section 4.1).
    """
    import signal
    import time

    from symnets_deploy.cli.progress import console
    from symnets_deploy.errors import EquivalenceError, Interrupted, UsageError
    from symnets_deploy.train.config import TrainConfig, resumed_config
    from symnets_deploy.train.run_folder import make_run_folder, new_run_folder

    launcher = nproc > 1 and not in_launched_group()
    if launched_world_size() > 1 and out is None and resume is None:
        raise UsageError("with several processes give --out, so that all of them write to one run folder ('symnets train --nproc N' picks one)")
    started = time.perf_counter()
    exports = _export_plan(export)  # names and TensorRT checked before any folder or training
    # data_root is stored absolute: export reads it back for its check images, maybe from another folder.
    values = dict(
        source=source, target=target, data_root=str(data_root.resolve()) if data_root else None, dataset=dataset, backbone=backbone,
        source_val=source_val, target_labels=target_labels.value, keep_every=keep_every,
        weights=str(weights) if weights else DEFAULTS["weights"], method=method.value, ablation=ablation.value, head=head.value,
        iterations=iterations, batch_size=batch_size, lr=lr, backbone_lr_mult=backbone_lr_mult, momentum=momentum,
        weight_decay=weight_decay, lr_alpha=lr_alpha, lr_beta=lr_beta, lambda_gamma=lambda_gamma, image_size=image_size, flip=flip, zoom=zoom,
        device=device.value, seed=seed, out=str(out or new_run_folder()), eval_every=eval_every, checkpoint_every=checkpoint_every,
        log_every=log_every, threads=threads, cache=cache, cache_dir=str(cache_dir) if cache_dir else None, cuda_graph=cuda_graph, report=report, data_on=data_on.value,
    )
    if resume is not None:
        # Typer (and the click it wraps or vendors) says where each value came from; defaults are not "given".
        given = {name: values[name] for name in values if options.given(ctx, name)}
        config = resumed_config(resume, given)
        console.log(f"resuming {resume} with its saved config" + (f" for {config.iterations} iterations" if "iterations" in given else ""))
    else:
        missing = [f"--{name.replace('_', '-')}" for name in ("source", "target", "data_root") if values[name] is None]
        if missing:
            raise UsageError(f"missing {', '.join(missing)} (or --resume RUN to continue a run)")
        config = TrainConfig(**values)
    if overwrite and resume is not None:
        raise UsageError("--overwrite starts a new run; --resume continues one: give only one")
    if launcher:
        from symnets_deploy.cli.launch import check_processes, command_line, launch

        check_processes(nproc, config.device, config.batch_size)
        args = command_line(ctx)
        if out is None and resume is None:  # one new run folder for all processes, chosen here
            args += ["--out", str(make_run_folder(Path(config.out)))]
        launch(nproc, args, Path(config.out))
        return
    if out is None and resume is None:
        make_run_folder(Path(config.out))
    finished = []
    result = _run(config, resume=resume is not None, overwrite=overwrite, on_finished=finished.append)
    if not is_rank_zero():
        return  # rank 0 prints, exports and reports
    typer.echo(result_line(result))
    run = Path(config.out)
    try:
        if exports and finished:
            _export_after_training(exports, finished[0], run, started)
    except KeyboardInterrupt:
        raise Interrupted(f"SIGINT during the export: the run is complete and saved in {run} (last.pt), with each artifact that "
                          f"passed its check; export again with: symnets export {run}", signal.SIGINT) from None
    except EquivalenceError:
        if config.report and finished:  # a failed check still gets the report of the run
            _report(run)
        raise
    if config.report and finished:
        _report(run)


def _run(config, **run_options):
    """Train; in a process of ``--nproc N``, losing another process is one line (the launcher names which), not a traceback."""
    from symnets_deploy.cli.progress import TrainProgress
    from symnets_deploy.errors import ProcessLost
    from symnets_deploy.train.distributed import lost_peer
    from symnets_deploy.train.trainer import train as run_training

    try:
        return run_training(config, TrainProgress(), **run_options)
    except RuntimeError as exc:
        lost = lost_peer(exc)
        if not lost:
            raise
        raise ProcessLost(f"{config.out}: lost contact with another training process ({lost})") from None


def result_line(result) -> str:
    """The run's one-line result: label-free scores, and target accuracy marked as evaluation only where labels exist."""
    from symnets_deploy.label_free import describe

    accuracy = (
        f"target acc Ct {100 * result.target_acc_ct:.2f}%, Cs {100 * result.target_acc_cs:.2f}% (class folders, evaluation only) | "
        if result.target_acc_ct is not None else "target labels: none | "
    )
    return (
        f"{result.source} -> {result.target} ({result.method}, {result.backbone}): {accuracy}{describe(result.label_free)} | "
        f"{result.iterations} it in {result.seconds:.1f}s, {result.images_per_s:.1f} img/s mean over the training | {result.out}"
    )


def _report(run: Path) -> None:
    """The run's report/, when the [report] extra is installed; otherwise one line saying how to get it."""
    from symnets_deploy.cli.progress import console
    from symnets_deploy.cli.report import echo_problems
    from symnets_deploy.report import extra_installed, write_run_report

    if not extra_installed():
        console.log(f"no report drawn: pip install 'symnets-deploy[report]', then: symnets report {run}")
        return

    console.log("drawing the report (curves, label-free scores, t-SNE)")
    done = write_run_report(run)
    echo_problems(done)
    typer.echo(f"report: {done.html}")


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
    from symnets_deploy.export.variants import check_images, export_trained

    names, env = exports
    images = check_images(trained.images, trained.labels, trained.paths, trained.target_folder)
    outcomes = export_trained(trained.model, trained.card, images, names, out, env, stage=console.log)
    stages = {**trained.seconds, **{f"export {o.name}": o.seconds for o in outcomes}}
    typer.echo("stages: " + ", ".join(f"{name} {sec:.1f}s" for name, sec in stages.items()) + f" | total {time.perf_counter() - started:.1f}s")
    report_outcomes(outcomes, out)


def report_outcomes(outcomes, out: Path) -> None:
    """One line per exported variant (passed with its report, or FAILED); exit 6 if any check failed."""
    from symnets_deploy.errors import EquivalenceError

    for o in outcomes:
        if o.produced is not None:
            accuracy = (o.produced.accuracy or {}).get(o.produced.report.comparisons[0].candidate)
            score = f", accuracy {100 * accuracy['accuracy']:.2f}% ({accuracy['correct']}/{accuracy['images']})" if accuracy else ""
            typer.echo(f"{o.name}: {o.path} passed on {o.produced.report.num_images} images{score} | report {o.produced.report_path}")
        else:
            typer.echo(f"{o.name}: FAILED: {o.error}")
    failed = [o.name for o in outcomes if o.error is not None]
    if failed:
        raise EquivalenceError(f"{', '.join(failed)}: equivalence check failed (see above); the other artifacts are kept in {out}")
