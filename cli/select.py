"""``symnets select``: choose among the kept checkpoints of several runs without a target label."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from symnets_deploy.cli.main import command, handle_errors


@command("select")
@handle_errors
def select_command(
    runs: List[Path] = typer.Argument(..., metavar="RUN...", help="Run folders of 'symnets train' (same source and target)."),
    out: Path = typer.Option(..., "--out", help="Folder for selection.json and, with --export, the chosen model."),
    export: Optional[str] = typer.Option(None, "--export", metavar="VARIANTS", help="Then export and check the choice: onnx, fp16, int8, trt, trt-fp16."),
) -> None:
    """Rank every kept checkpoint of the given runs by label-free scores and pick one.

    Candidates are the checkpoints a run kept (symnets train --keep-every N) or, when it kept none, its finished last.pt. They are ranked by the mean of their ranks in held-out source accuracy of Ct and in cluster V-measure (target predictions vs k-means of the logits); a candidate whose target predictions collapsed ranks last. No target label enters the choice: where the target has class folders, its accuracy is shown as an oracle column only. Always include a --method source-only run: adaptation is not guaranteed to help.

    Writes OUT/selection.json (the rule, the choice, every candidate's scores); --export onnx,fp16,int8 then exports the chosen checkpoint into OUT exactly as 'symnets export' would, each variant checked.
    """
    from symnets_deploy.cli.progress import console
    from symnets_deploy.selection import select

    exports = None
    if export:
        from symnets_deploy.export.variants import parse_variants, preflight

        names = parse_variants(export)
        exports = names, preflight(names)  # names and TensorRT checked before any work
    selection = select(runs)
    typer.echo(selection.table())
    path = selection.save(Path(out) / "selection.json")
    chosen = selection.chosen
    typer.echo(f"chosen: {chosen.run} at iteration {chosen.iteration} ({chosen.checkpoint}) | {path}")
    if exports is None:
        return
    from symnets_deploy.cli.train import report_outcomes
    from symnets_deploy.export.calibration import collect_images
    from symnets_deploy.export.variants import export_trained
    from symnets_deploy.train.checkpoint import model_from_checkpoint

    names, env = exports
    model, card, _ = model_from_checkpoint(Path(chosen.checkpoint))
    images = collect_images(card)
    console.log(f"{len(images.paths)} check images from {images.source}")
    report_outcomes(export_trained(model, card, images, names, Path(out), env, stage=console.log), Path(out))
