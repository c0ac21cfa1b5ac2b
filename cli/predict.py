"""``symnets predict``: classify folders of new target-domain images with an ONNX or TensorRT artifact."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Iterable, Iterator, List, Optional

import typer

from symnets_deploy.backends.ort import Provider
from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.enums import Device, OutputFormat

INPUT, OUTPUT, MONITOR, SCALE = "Input", "Output", "Monitoring", "Scale out (\\[ray] extra)"


@command()
@handle_errors
def predict(
    inputs: List[str] = typer.Argument(..., help="Images, folders, @list or .txt files of paths, or - (stdin)."),
    engine: Path = typer.Option(..., "--engine", "-e", help="model.onnx or model.plan (with its .plan.json)."),
    output: str = typer.Option("-", "--output", "-o", help="preds.csv, preds.jsonl, or - for stdout.", rich_help_panel=OUTPUT),
    fmt: Optional[OutputFormat] = typer.Option(None, "--format", help="Default: from the --output suffix; csv for stdout.", rich_help_panel=OUTPUT),
    top_k: int = typer.Option(5, "--top-k", min=1, metavar="K", help="Classes per image, most probable first.", rich_help_panel=OUTPUT),
    batch_size: int = options.BATCH_SIZE,
    device: Device = options.DEVICE,
    provider: Optional[Provider] = options.PROVIDER,
    threads: int = options.THREADS,
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Scan sub-folders of folder inputs.", rich_help_panel=INPUT),
    summary: Optional[Path] = typer.Option(None, "--summary", metavar="FILE", help="Write estimated accuracy and the drift verdict as JSON.", rich_help_panel=MONITOR),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit 7 when the images drifted from the model's reference.", rich_help_panel=MONITOR),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS", help="Run as a Ray Data job: local (a new cluster on this machine), auto (the one RAY_ADDRESS or 'ray start' names), HOST:PORT of a cluster, or ray://HOST:PORT (Ray Client, needs ray\\[client]). Exit 2 when the address is malformed or no cluster answers there within 5 s.", rich_help_panel=SCALE),
    ray_actors: int = typer.Option(2, "--ray-actors", min=1, metavar="N", help="With --ray: actors, each with its own model.", rich_help_panel=SCALE),
) -> None:
    """Predict a label for every image with an exported model, without PyTorch.

    One output row per file, in input order; files that cannot be read or decoded get an error row and the command exits 3. Output files are written atomically. Classes, input size and preprocessing come from the model card inside the artifact.

    When the model carries a reference profile (every export does; 'symnets profile' adds one to an older file), the run is compared with the images the model was adapted to, without any label: an estimated accuracy beside the reference's, a drift verdict with its reasons, and per image the columns low_confidence and unusual (images unlike the reference, worth labeling).
    """
    from symnets_deploy.errors import UsageError
    from symnets_deploy.inputs import collect_paths
    from symnets_deploy.outputs import artifact_files, refuse_overwriting
    from symnets_deploy.predictor import Predictor
    from symnets_deploy.writers import resolve_format, write_predictions

    fmt = resolve_format(output, fmt)
    options.named_model(engine)  # before scanning what may be a large folder
    paths = collect_paths(inputs, recursive=recursive)
    reads = [*artifact_files(engine), *paths]
    refuse_overwriting(output, reads, "--output")
    refuse_overwriting(summary, [*reads, *([output] if output != "-" else [])], "--summary")
    if summary is not None and output != "-" and Path(summary).resolve() == Path(output).resolve():
        raise UsageError(f"{summary}: --summary and --output name the same file")
    if ray is not None:
        _predict_on_ray(paths, engine, ray, ray_actors, output, fmt, summary=summary, fail_on_drift=fail_on_drift,
                        batch_size=batch_size, top_k=top_k, device=device, provider=provider, threads=threads)
        return
    with Predictor.load(engine, device=device, batch_size=batch_size, provider=provider, threads=threads, top_k=top_k) as predictor:
        if predictor.profile is None and (summary is not None or fail_on_drift):
            raise UsageError(no_profile(engine))  # before any image is predicted
        start = time.perf_counter()
        with contextlib.closing(_progress(predictor.iter_predict_paths(paths), len(paths))) as rows:  # the bar ends before any error line
            stats = write_predictions(rows, output, fmt)
        seconds = time.perf_counter() - start
        monitored = predictor.monitoring_summary()
    ran_on = f"{stats.rows / max(seconds, 1e-9):.1f} images/s ({predictor.backend.name} {predictor.precision}, batch {predictor.batch_size})"
    _finish(stats, seconds, ran_on, output, engine, monitored, summary, fail_on_drift)


def _finish(stats, seconds: float, ran_on: str, output: str, engine: Path, monitored, summary, fail_on_drift: bool) -> None:
    """The end of a prediction, local or on Ray: monitoring, the one summary line, and exit 3 when rows failed."""
    from symnets_deploy.errors import PartialFailure

    print_monitoring(monitored, engine)
    typer.echo(f"{stats.rows} images, {stats.failures} failed, {seconds:.1f} s, {ran_on} -> {'stdout' if output == '-' else output}", err=True)
    save_monitoring(monitored, summary, fail_on_drift)
    if stats.failures:
        raise PartialFailure(f"{stats.failures} of {stats.rows} images could not be predicted (rows with status=error)")


def no_profile(engine: Path) -> str:
    return (f"{engine}: has no reference profile, so there is no accuracy estimate or drift check; "
            f"add one with: symnets profile {engine} TARGET_IMAGES --output PROFILED.onnx")


def print_monitoring(monitored: Optional[dict], engine: Path) -> None:
    """The estimate and the verdict (two lines on stderr), or how to get them."""
    from symnets_deploy.monitoring import describe_summary

    for line in describe_summary(monitored) if monitored is not None else [f"note: {no_profile(engine)}"]:
        typer.echo(line, err=True)


def save_monitoring(monitored: Optional[dict], summary: Optional[Path], fail_on_drift: bool) -> None:
    """``--summary`` JSON, and exit 7 with ``--fail-on-drift`` when the verdict is drift."""
    import json

    from symnets_deploy.atomic import atomic_write
    from symnets_deploy.errors import DriftDetected

    if monitored is None:
        return
    if summary is not None:
        text = json.dumps(monitored, indent=2) + "\n"
        atomic_write(summary, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    if fail_on_drift and monitored["drift"]:
        raise DriftDetected(f"drift: {'; '.join(monitored['reasons'])}")


def _predict_on_ray(paths, engine: Path, address: str, actors: int, output: str, fmt, *, summary, fail_on_drift, **options) -> None:
    """The same rows and monitoring summary as without --ray, from a Ray Data job (one Predictor per actor).

    The address and the model are checked as without --ray before any cluster starts (one line, exit 2/4/5).
    """
    from symnets_deploy.errors import UsageError
    from symnets_deploy.monitoring import RunningStats
    from symnets_deploy.predictor import Predictor
    from symnets_deploy.ray_batch import cluster_endpoint, predict_paths_ray
    from symnets_deploy.writers import write_predictions

    address = address or "local"
    cluster_endpoint(address)
    device, provider = options.pop("device"), options.pop("provider")
    device, provider = getattr(device, "value", device), getattr(provider, "value", provider)
    threads = options.pop("threads") or 1
    with Predictor.load(engine, device=device, provider=provider, threads=threads, **options) as checked:  # what every actor opens
        profile = checked.profile
    if profile is None and (summary is not None or fail_on_drift):
        raise UsageError(no_profile(engine))
    monitor = RunningStats(profile) if profile is not None else None

    start = time.perf_counter()
    predictions = predict_paths_ray(
        paths, engine, address=address, concurrency=actors, device=device, threads=threads, provider=provider,
        monitor=monitor.update if monitor is not None else None, **options,
    )
    stats = write_predictions(predictions, output, fmt)
    seconds = time.perf_counter() - start
    monitored = monitor.summary() if monitor is not None else None
    _finish(stats, seconds, f"on Ray ({actors} actors, {address})", output, engine, monitored, summary, fail_on_drift)


def _progress(predictions: Iterable, total: int) -> Iterator:
    """Pass predictions through while drawing a bar with images/s on stderr."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from symnets_deploy.cli.progress import console

    columns = (TextColumn("[bold]predict"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[rate]}"))
    with Progress(*columns, console=console, transient=False, refresh_per_second=4) as bar:
        task = bar.add_task("predict", total=total, rate="")
        start = time.perf_counter()
        for done, prediction in enumerate(predictions, 1):
            yield prediction
            if done % 8 == 0 or done == total:  # results arrive a batch at a time anyway
                bar.update(task, completed=done, rate=f"{done / max(time.perf_counter() - start, 1e-9):.1f} img/s")
