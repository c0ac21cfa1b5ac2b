"""``symnets report``: the figures and the HTML page of a training run."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from symnets_deploy.cli.main import command, handle_errors


@command()
@handle_errors
def report(
    run: Path = typer.Argument(..., help="Run folder written by 'symnets train'."),
    out: Optional[Path] = typer.Option(None, help="Where to write (default: RUN/report)."),
    compare: Optional[List[Path]] = typer.Option(None, "--compare", metavar="RUN", help="Another run of the same domains (e.g. the source-only baseline) to show in one table with this one; repeatable."),
) -> None:
    """Draw what adaptation did in a run: curves, label-free scores, t-SNE, report.html.

    The figures: training curves, the label-free scores over the iterations, a t-SNE of the features of both domains before and after adaptation and, where the target has class folders (used for evaluation only), the target confusion matrix with per-class accuracy and each label-free score against target accuracy; all in one report.html with the run's summary, warnings, configuration and checked artifacts.

    A damaged run file (a torn metrics line, a truncated .npz, NaN features, a file that is not JSON) costs only the figures that need it: each is named in one 'warning:' line on stderr and on the page, and the command still exits 0.

    Needs the \\[report] extra (matplotlib, scikit-learn): pip install 'symnets-deploy\\[report]'. 'symnets train' writes this report at the end of every run when the extra is installed.
    """
    from symnets_deploy.errors import UsageError
    from symnets_deploy.report import write_run_report
    from symnets_deploy.run_files import SUMMARY

    if out is not None and out.exists() and not out.is_dir():
        raise UsageError(f"{out}: is a file, not a folder; --out names the folder the report is written to")
    for other in compare or ():
        if not (other / SUMMARY).is_file():
            raise UsageError(f"{other}: not a finished run folder (no summary.json) to compare with")
    done = write_run_report(run, out, compare=compare or ())
    for name, path in done.figures.items():
        typer.echo(f"{name}: {path}")
    for name, why in done.missing.items():
        typer.echo(f"{name}: not drawn ({why})")
    echo_problems(done)
    typer.echo(f"report: {done.html}")


def echo_problems(done) -> None:
    """One ``warning:`` line on stderr per damaged run file: the rest of the report is drawn, and the command succeeds."""
    for line in done.problems:
        typer.echo(f"warning: {line}", err=True)
