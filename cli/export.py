"""``symnets export``: turn a checkpoint (or an fp32 ONNX) into a checked ONNX model or TensorRT engine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.export.calibration import DEFAULT_MAX_IMAGES
from symnets_deploy.export.int8 import DEFAULT_CALIBRATION_SIZE
from symnets_deploy.enums import ExportFormat, Head, Precision

SOURCE, ARTIFACT, CHECK, TENSORRT = "Source", "Artifact", "Check", "TensorRT (--format trt)"


@command()
@handle_errors
def export(
    checkpoint: Optional[Path] = typer.Option(None, help="RUN_DIR/last.pt (or the run folder) to export.", rich_help_panel=SOURCE),
    from_onnx: Optional[Path] = typer.Option(None, help="Or: an fp32 model.onnx of this package to convert.", rich_help_panel=SOURCE),
    format: ExportFormat = typer.Option(ExportFormat.onnx, "--format", help="onnx (any machine) or trt (NVIDIA GPU).", rich_help_panel=ARTIFACT),
    precision: Precision = typer.Option(Precision.fp32, help="fp16 for GPUs, int8 for CPUs.", rich_help_panel=ARTIFACT),
    head: Optional[Head] = typer.Option(None, help="Deployed classifier (default: the card's, ct).", rich_help_panel=ARTIFACT),
    output: Optional[Path] = typer.Option(None, help="Artifact file (default: model[.PRECISION].onnx|plan).", rich_help_panel=ARTIFACT),
    opset: int = typer.Option(18, metavar="N", help="ONNX opset (18 or newer).", rich_help_panel=ARTIFACT),
    calibration_images: Optional[Path] = typer.Option(None, help="Images for the check (default: the target domain).", rich_help_panel=CHECK),
    max_images: int = typer.Option(DEFAULT_MAX_IMAGES, metavar="N", help="At most this many check images.", rich_help_panel=CHECK),
    calibration_size: Optional[int] = typer.Option(None, metavar="N", help=f"int8: check images that calibrate (default {DEFAULT_CALIBRATION_SIZE}).", rich_help_panel=CHECK),
    min_batch: Optional[int] = typer.Option(None, metavar="N", help="Smallest batch (default 1).", rich_help_panel=TENSORRT),
    opt_batch: Optional[int] = typer.Option(None, metavar="N", help="Batch to optimise for (default 8).", rich_help_panel=TENSORRT),
    max_batch: Optional[int] = typer.Option(None, metavar="N", help="Largest batch (default 32).", rich_help_panel=TENSORRT),
    workspace_mib: int = typer.Option(1024, metavar="MIB", help="Builder workspace limit.", rich_help_panel=TENSORRT),
    timing_cache: Optional[Path] = typer.Option(None, help="Timing cache file (default: under ~/.cache).", rich_help_panel=TENSORRT),
) -> None:
    """Export a checkpoint and prove the artifact computes the checkpoint's function on real images.

    The check runs the artifact and its reference on the target domain's images (or --calibration-images) and writes <artifact>.verify.json; a failed check exits 6 and places no artifact. fp16 is for NVIDIA GPUs (onnxruntime-gpu, TensorRT), int8 (ONNX Runtime static quantization) for CPUs; inputs and outputs stay float32. With --from-onnx, an fp32 ONNX made by this package is converted to fp16 or int8 and checked against that ONNX. --format trt builds a TensorRT engine with a .plan.json sidecar; it needs TensorRT and the GPU it will run on.
    """
    from symnets_deploy.cli.progress import console
    from symnets_deploy.export.api import ExportConfig, run_export

    config = ExportConfig(
        checkpoint=str(checkpoint) if checkpoint else None, from_onnx=str(from_onnx) if from_onnx else None, format=format.value, precision=precision.value, head=head.value if head else None,
        output=str(output) if output else None, calibration_images=str(calibration_images) if calibration_images else None,
        max_images=max_images, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, opset=opset,
        workspace_mib=workspace_mib, timing_cache=str(timing_cache) if timing_cache else None, calibration_size=calibration_size,
    )
    if checkpoint is not None:  # after the options are checked, before anything loads: a typo is exit 2, one line
        options.named_checkpoint(checkpoint)
    if from_onnx is not None:
        options.named_model(from_onnx, "ONNX file")
    result = run_export(config, stage=console.log)
    typer.echo(result.report.table())
    for line in result.accuracy_lines():
        typer.echo(line)
    typer.echo(f"{result.artifact} ({config.precision}) passed on {result.report.num_images} images of {result.images_source} in {result.seconds:.1f}s | report {result.report_path}")
    if result.files:
        typer.echo("also wrote: " + ", ".join(str(p) for p in result.files))
