"""The ``symnets`` command: one Typer app; each command lives in its own module.

Errors a user can fix (``SymnetsError``) become ``error: <message>`` on stderr and the exit
code of STYLE.md's table; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import Callable, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from symnets_deploy import __version__
from symnets_deploy.cli.options import PlainArguments
from symnets_deploy.errors import SymnetsError
from symnets_deploy.host import launched_rank


class _FlagsWithoutType:
    """Flags take no value: no ``<bool>`` type column for them (``--help`` included) in help."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class SymnetsGroup(_FlagsWithoutType, TyperGroup):
    """Typer's group, with usage errors (bad choice, missing option) printed like every other error.

    Typer would draw them in a box over several lines, with its own "Value error," inside; here
    they are one ``error: ...`` line on stderr with exit code 2, the project's form (STYLE.md 6).
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from typer._click import exceptions as click_errors

        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click_errors.NoArgsIsHelpError:
            code = 2  # the help was printed
        except click_errors.ClickException as err:
            message = " ".join(err.format_message().replace("Value error, ", "").split())
            command = getattr(getattr(err, "ctx", None), "command_path", None)
            typer.echo(f"error: {message}" + (f" (see '{command} --help')" if command else ""), err=True)
            code = err.exit_code
        except typer.Abort as err:
            if isinstance(err.__cause__, EOFError):  # click turns any EOFError into Abort; we prompt for nothing, so it is a bug
                raise err.__cause__
            typer.echo("error: aborted", err=True)
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


class SymnetsCommand(PlainArguments, _FlagsWithoutType, TyperCommand):
    """Typer's command without a ``<bool>`` type column for flags (``--help``, ``--overwrite``...), and arguments
    shown as a user types them (``cli.options.PlainArguments``)."""


app = typer.Typer(
    name="symnets",
    cls=SymnetsGroup,
    help="SymNets unsupervised domain adaptation: train on labeled source + unlabeled target images, "
    "export to ONNX / TensorRT with equivalence checks, predict without PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


#: ``@command()`` registers a ``symnets`` sub-command (use it instead of ``@app.command()``).
command = functools.partial(app.command, cls=SymnetsCommand)


def is_rank_zero() -> bool:
    """Whether this process reports: always, except the ranks 1.. of a multi-process training (torchrun's RANK)."""
    return launched_rank() == 0


def fail(err: SymnetsError) -> typer.Exit:
    """Print one line for a user-fixable error and return the matching Exit to raise.

    A process of ``train --nproc N`` leaves its error to the launcher, which prints it once for all;
    of processes started by hand with torchrun, only rank 0 reports an interruption (they all stop together).
    """
    from symnets_deploy.cli.launch import record_error
    from symnets_deploy.errors import Interrupted

    if not record_error(err) and str(err) and (not isinstance(err, Interrupted) or is_rank_zero()):
        typer.echo(f"error: {err}", err=True)
    return typer.Exit(code=err.exit_code)


def handle_errors(command: Callable) -> Callable:
    """Map ``SymnetsError`` to its exit code, and a file-system failure (disk full, read-only, no
    permission) to one line naming the path (``StorageError``, exit 9); nothing else is caught."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import signal

        from symnets_deploy.errors import Interrupted, StorageError

        try:
            return command(*args, **kwargs)
        except SymnetsError as err:
            raise fail(err) from None
        except BrokenPipeError:
            _silence_stdout()  # the reader went away (`| head`): not an error, and nothing more to say
            return None
        except OSError as err:
            raise fail(StorageError.from_os_error(err)) from None
        except KeyboardInterrupt:
            raise fail(Interrupted("interrupted (SIGINT); files are written whole or not at all, so every output already there is complete", signal.SIGINT)) from None

    return wrapper


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush into a closed pipe raises nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file descriptor (a test runner's buffer)


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
    from symnets_deploy.cli import info as _info  # noqa: F401
    from symnets_deploy.cli import report as _report  # noqa: F401
    from symnets_deploy.cli import select as _select  # noqa: F401
    from symnets_deploy.cli import profile as _profile  # noqa: F401


_register()


def main() -> None:
    """Console-script entry point."""
    app(prog_name="symnets")


if __name__ == "__main__":
    # Run as a script, this file is `__main__`, a second copy without the commands registered
    # on the imported module; delegate to the real one.
    from symnets_deploy.cli.main import main as _main

    sys.exit(_main())
