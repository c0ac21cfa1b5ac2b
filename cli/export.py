"""``symnets export``: turn a checkpoint (or an fp32 ONNX) into a checked ONNX model or TensorRT engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli.main import app, handle_errors
from symnets_deploy.export.calibration import DEFAULT_MAX_IMAGES
from symnets_deploy.export.int8 import DEFAULT_CALIBRATION_SIZE
from symnets_deploy.enums import ExportFormat, Head, Precision


@app.command()
@handle_errors
def export(
    checkpoint: Optional[Path] = typer.Option(None, help="Checkpoint to export: RUN_DIR/last.pt (or the run folder)."),
    from_onnx: Optional[Path] = typer.Option(None, help="Instead of --checkpoint: an fp32 model.onnx from 'symnets export' to convert to fp16 or int8."),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx (ONNX Runtime, any machine) or trt (TensorRT engine; needs TensorRT and an NVIDIA GPU)."),
    precision: Precision = typer.Option(Precision.fp32, help="fp32; fp16 (GPUs, TensorRT); int8 (CPUs: ONNX Runtime static quantization). I/O stays float32."),
    head: Optional[Head] = typer.Option(None, help="Deployed classifier: ct (target), cs (source), paired (default: the checkpoint's, normally ct)."),
    output: Optional[Path] = typer.Option(None, help="Artifact file (default: model[.fp16|.int8].onnx|plan next to the checkpoint, NAME.PRECISION.onnx in the current folder for --from-onnx)."),
    calibration_images: Optional[Path] = typer.Option(None, help="Real target-domain images for the check and int8 calibration (default: the card's target domain)."),
    max_images: int = typer.Option(DEFAULT_MAX_IMAGES, help="At most this many images in the check (evenly spread, deterministic)."),
    calibration_size: Optional[int] = typer.Option(None, help=f"int8: images of the check set that calibrate activations (default {DEFAULT_CALIBRATION_SIZE})."),
    min_batch: Optional[int] = typer.Option(None, help="TensorRT profile: smallest batch (default 1)."),
    opt_batch: Optional[int] = typer.Option(None, help="TensorRT profile: batch to optimise for (default 8)."),
    max_batch: Optional[int] = typer.Option(None, help="TensorRT profile: largest batch (default 32)."),
    opset: int = typer.Option(18, help="ONNX opset (18 or newer)."),
    workspace_mib: int = typer.Option(1024, help="TensorRT builder workspace limit, MiB."),
    timing_cache: Optional[Path] = typer.Option(None, help="TensorRT timing cache file, reused across builds (default: under ~/.cache/symnets-deploy)."),
) -> None:
    """Export a checkpoint and prove the artifact computes the checkpoint's function on real images.

    With --from-onnx, convert an fp32 ONNX made by this package to fp16 or int8 and check it against
    that ONNX. A failed check exits with code 6 and leaves only the report (<artifact>.verify.json).
    """
    from symnets_deploy.cli.progress import console
    from symnets_deploy.export.api import ExportConfig, run_export

    config = ExportConfig(
        checkpoint=str(checkpoint) if checkpoint else None, from_onnx=str(from_onnx) if from_onnx else None, format=format.value, precision=precision.value, head=head.value if head else None,
        output=str(output) if output else None, calibration_images=str(calibration_images) if calibration_images else None,
        max_images=max_images, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, opset=opset,
        workspace_mib=workspace_mib, timing_cache=str(timing_cache) if timing_cache else None, calibration_size=calibration_size,
    )
    result = run_export(config, stage=console.log)
    typer.echo(result.report.table())
    for line in result.accuracy_lines():
        typer.echo(line)
    typer.echo(f"{result.artifact} ({config.precision}) passed on {result.report.num_images} images of {result.images_source} in {result.seconds:.1f}s | report {result.report_path}")
    if result.files:
        typer.echo("also wrote: " + ", ".join(str(p) for p in result.files))
