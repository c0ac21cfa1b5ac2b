"""The ``symnets`` command: one Typer app; each command lives in its own module.

Errors a user can fix (``SymnetsError``) become ``error: <message>`` on stderr and the exit
code of STYLE.md's table; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from typing import Callable, Optional

import typer

from symnets_deploy import __version__
from symnets_deploy.errors import SymnetsError

app = typer.Typer(
    name="symnets",
    help="SymNets unsupervised domain adaptation: train on labeled source + unlabeled target images, "
    "export to ONNX / TensorRT with equivalence checks, predict without PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def fail(err: SymnetsError) -> typer.Exit:
    """Print one line for a user-fixable error and return the matching Exit to raise."""
    typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=err.exit_code)


def handle_errors(command: Callable) -> Callable:
    """Map ``SymnetsError`` to its exit code; nothing else is caught."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SymnetsError as err:
            raise fail(err) from None

    return wrapper


def _version(value: bool) -> None:
    if value:
        typer.echo(f"symnets-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Optional[bool] = typer.Option(None, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """SymNets: adapt, export, predict."""


def _register() -> None:
    # Command modules import their rooms lazily, so `symnets predict --help` loads no torch.
    from symnets_deploy.cli import train as _train  # noqa: F401
    from symnets_deploy.cli import export as _export  # noqa: F401
    from symnets_deploy.cli import verify as _verify  # noqa: F401
    from symnets_deploy.cli import predict as _predict  # noqa: F401
    from symnets_deploy.cli import evaluate as _evaluate  # noqa: F401
    from symnets_deploy.cli import demo as _demo  # noqa: F401


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="symnets")


if __name__ == "__main__":
    # Run as a script, this file is `__main__`, a second copy without the commands registered
    # on the imported module; delegate to the real one.
    from symnets_deploy.cli.main import main as _main

    sys.exit(_main())
