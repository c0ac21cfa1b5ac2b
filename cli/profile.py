"""``symnets profile``: give an exported model the reference profile that predict-time monitoring needs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli import options
from symnets_deploy.cli.main import command, handle_errors


@command("profile")
@handle_errors
def profile_command(
    model: Path = typer.Argument(..., help="An .onnx exported by symnets (e.g. one made by an older version)."),
    target_dir: Path = typer.Argument(..., help="The images the model was adapted to (no labels needed)."),
    output: Path = typer.Option(..., "--output", "-o", help="The copy to write, with the profile; never the model itself."),
    labeled_val: Optional[Path] = typer.Option(None, "--labeled-val", metavar="DIR", help="Held-out <class>/<image> folder to calibrate the estimate."),
    batch_size: int = options.BATCH_SIZE,
    threads: int = options.THREADS,
) -> None:
    """Profile a model's outputs on its target images and write a copy that carries the profile.

    The profile (confidence and energy distributions, predicted class shares, the accuracy estimate on the target itself) is what 'symnets predict' and 'symnets evaluate' compare new images with, to estimate accuracy without labels and flag drift. Every 'symnets export' writes one; this command adds one to a model that has none. Runs without PyTorch; the weights and model card are unchanged.
    """
    from symnets_deploy.cli.progress import console
    from symnets_deploy.monitoring import describe_profile
    from symnets_deploy.reference import profile_artifact

    profile = profile_artifact(model, target_dir, output=output, labeled_val=labeled_val, batch_size=batch_size, threads=threads, stage=console.log)
    for line in describe_profile(profile):
        typer.echo(line)
    typer.echo(f"wrote {output} (the weights and card of {model}, with its reference profile)")
