"""``symnets verify``: rerun the equivalence check of an artifact against its checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.export.calibration import DEFAULT_MAX_IMAGES


@command()
@handle_errors
def verify(
    artifact: Path = typer.Argument(..., help="model.onnx or model.plan written by 'symnets export'."),
    checkpoint: Path = typer.Option(..., help="The checkpoint it was exported from (RUN_DIR/last.pt)."),
    images: Optional[Path] = typer.Option(None, help="Real images for the check (default: the checkpoint's target domain)."),
    max_images: int = typer.Option(DEFAULT_MAX_IMAGES, help="At most this many images (evenly spread, deterministic)."),
) -> None:
    """Check that an artifact still computes its checkpoint's function; exit code 6 when it does not."""
    from symnets_deploy.export.api import run_verify

    done = run_verify(options.named_model(artifact, "artifact"), options.named_checkpoint(checkpoint), images=images, max_images=max_images)
    typer.echo(done.report.table())
    for line in done.accuracy_lines():
        typer.echo(line)
    typer.echo(f"{done.artifact} passed on {done.report.num_images} images of {done.images_source} | report {done.report_path}")
