"""``symnets evaluate``: accuracy and confusion matrix of an exported artifact on labeled images."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.backends.ort import Provider
from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.enums import Device


@command()
@handle_errors
def evaluate(
    artifact: Path = typer.Argument(..., help="model.onnx or model.plan (with its .plan.json sidecar)."),
    data_dir: Path = typer.Argument(..., help="Labeled images as DATA_DIR/<class>/<image>; class folders named as in the model card (a subset is fine)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the results as JSON (atomically)."),
    top_k: int = typer.Option(1, "--top-k", min=1, metavar="K", help="Also report top-k accuracy."),
    report: Optional[Path] = typer.Option(None, "--report", help="Also draw confusion.png into this folder (\\[report] extra)."),
    batch_size: int = options.BATCH_SIZE,
    device: Device = options.DEVICE,
    provider: Optional[Provider] = options.PROVIDER,
    threads: int = options.THREADS,
) -> None:
    """Accuracy, per-class accuracy and confusion matrix on labeled images; exit code 3 when some images fail."""
    from symnets_deploy.errors import PartialFailure
    from symnets_deploy.evaluation import evaluate_artifact

    from symnets_deploy.inputs import scan_folder
    from symnets_deploy.outputs import artifact_files, refuse_overwriting

    reads = [*artifact_files(artifact), *(scan_folder(data_dir) if data_dir.is_dir() else [])]
    refuse_overwriting(json_out, reads, "--json")
    if report is not None:
        refuse_overwriting(report / "confusion.png", reads, "--report")
        from symnets_deploy.report import pyplot

        pyplot()  # the [report] extra, checked before the images are predicted
    result = evaluate_artifact(artifact, data_dir, top_k=top_k, batch_size=batch_size, device=device, provider=provider, threads=threads)
    typer.echo(result.table())
    if json_out is not None:
        typer.echo(f"results -> {result.save(json_out)}", err=True)
    if report is not None:
        from symnets_deploy.report import write_evaluation_figure

        typer.echo(f"figure -> {write_evaluation_figure(result, report)}", err=True)
    if result.failed:
        first = result.failed[0]
        raise PartialFailure(
            f"{len(result.failed)} of {len(result.failed) + result.images} images could not be predicted and are not counted "
            f"(first: {first['error']})"
        )
