"""``symnets train --nproc N``: check the request, start N training processes, and say in one line how they ended.

The processes are started with torch's elastic launcher (what ``torchrun --standalone`` runs). Each
runs ``symnets train`` with the options given here (rebuilt from the parsed options, so a call from
Python or a test runner passes them too). A process's own error is not printed by it but left in a
file for this launcher, which prints each distinct error once; a process that died (killed, out of
memory) is named with its signal, with what ``--resume`` can continue from.
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Optional

import typer

from symnets_deploy.cli.options import given
from symnets_deploy.errors import ProcessLost, SymnetsError, UsageError
from symnets_deploy.host import launched_rank

#: Where a worker leaves its error for the launcher (a folder; one file per rank).
ERRORS_ENV = "SYMNETS_RANK_ERRORS"
#: Seconds the launcher waits for its processes to checkpoint and stop after Ctrl-C before it kills them
#: (torch's default is 30 s; a rank checks for a stop every few iterations, then writes last.pt).
SHUTDOWN_SECONDS = 600
#: What the launcher sets where the user did not: torch's elastic agent reads the shutdown wait from the
#: environment (torch 2.11 and later; before, it is 30 s whatever is set), and one core per process
#: (check_processes) without torchrun's banner saying so.
LAUNCH_ENVIRONMENT = {"TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(SHUTDOWN_SECONDS), "OMP_NUM_THREADS": "1"}


def command_line(ctx: typer.Context, skip: tuple[str, ...] = ("nproc",)) -> list[str]:
    """The options the user gave (on the command line or in the environment), as arguments again."""
    args: list[str] = []
    for param in ctx.command.params:
        if param.name in skip or not param.opts:
            continue
        if not given(ctx, param.name):
            continue
        value = ctx.params[param.name]
        if getattr(param, "is_flag", False):
            names = param.opts if value else param.secondary_opts
            args += names[:1]
        elif value is not None:
            args += [param.opts[0], str(getattr(value, "value", value))]
    return args


def check_processes(nproc: int, device: str, batch_size: int) -> None:
    """Refuse what cannot run before any process starts: more processes than usable CPU cores (on the
    CPU) or GPUs (on CUDA), or a batch the processes cannot share equally.

    Raises:
        UsageError: naming the limit and the value that fits.
    """
    import torch

    from symnets_deploy.host import usable_cpus

    if device != "cpu" and torch.cuda.is_available():
        gpus = torch.cuda.device_count()
        if nproc > gpus:
            raise UsageError(f"--nproc {nproc}: one process per GPU, and torch sees {gpus} (--nproc {gpus}, or --device cpu)")
    else:
        cores = usable_cpus()
        if nproc > cores:
            raise UsageError(f"--nproc {nproc}: this machine lets the run use {cores} CPU cores, and each process needs one (--nproc {cores} at most)")
    if batch_size % nproc:
        raise UsageError(f"--batch-size {batch_size} must be a multiple of --nproc {nproc}: each process takes an equal share")


def torchrun_arguments(nproc: int, args: list[str]) -> list[str]:
    """torchrun's command line for ``symnets train ARGS`` in ``nproc`` processes of this machine."""
    return ["--standalone", "--nproc-per-node", str(nproc), "-m", "symnets_deploy.cli", "train", *args]


def launch(nproc: int, args: list[str], run: Path) -> None:
    """Run ``symnets train ARGS`` in ``nproc`` processes and wait for them.

    Raises:
        Interrupted-like SymnetsError: the processes' own error (printed once), or ``ProcessLost``
            when one died without one; nothing when all finished.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    from symnets_deploy.train.run_folder import run_lock

    if run.is_dir():
        with run_lock(run, main=True):
            pass  # refused at once when a live process trains in it (rank 0 takes the lock for the run)
    for name in ("torch.distributed.elastic", "torch.distributed.run"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # we say in one line what happened
    for name, value in LAUNCH_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory(prefix="symnets-ranks-", suffix=f"-{os.getpid()}") as errors:
        os.environ[ERRORS_ENV] = errors
        try:
            torchrun(torchrun_arguments(nproc, args))
        except ChildFailedError as exc:
            raise _failure(exc.failures, Path(errors), run) from None
        except SignalException as exc:  # Ctrl-C / SIGTERM: the processes checkpointed and said how to resume
            raise _first_error(Path(errors)) or _Exit(128 + int(exc.sigval)) from None
        finally:
            os.environ.pop(ERRORS_ENV, None)


class _Exit(SymnetsError):
    """An exit code whose message a process already printed (an interruption on rank 0)."""

    def __init__(self, code: int) -> None:
        super().__init__("")
        self.exit_code = code


def _failure(failures: dict[int, Any], errors: Path, run: Path) -> SymnetsError:
    """One error for the whole run: a killed process first (the others only lost it), else the ranks' own error."""
    # The launcher itself sends SIGTERM to the others once one fails: the cause is the first other death.
    killed = sorted((f.exitcode == -signal.SIGTERM, getattr(f, "timestamp", 0), rank, f) for rank, f in failures.items() if f.exitcode < 0)
    error = _first_error(errors)
    if killed and killed[0][0] and error is not None:
        return error  # only SIGTERM deaths: the launcher stopping the others after one failed with its own error
    if killed:
        *_, rank, failure = killed[0]
        try:
            how = f"was killed by {signal.Signals(-failure.exitcode).name}"
        except ValueError:
            how = f"died (signal {-failure.exitcode})"
        kept = (
            f"continue from its last checkpoint with: symnets train --resume {run}" if (run / "last.pt").is_file()
            else "no checkpoint was written yet (--checkpoint-every N writes some); start the run again"
        )
        return ProcessLost(f"training process rank {rank} (pid {failure.pid}) {how}; the other processes stopped; {kept}")
    if error is not None:
        return error
    code = next((f.exitcode for _, f in sorted(failures.items()) if f.exitcode > 0), 1)
    return _Exit(code)  # a bug: the process printed its traceback


def record_error(err: SymnetsError) -> bool:
    """In a process started by ``launch``: leave the error for the launcher to print once. False elsewhere."""
    folder = os.environ.get(ERRORS_ENV, "")
    launcher = folder.rsplit("-", 1)[-1]  # the folder's name ends in the launcher's pid
    if not folder or not Path(folder).is_dir() or str(os.getppid()) != launcher:
        return False  # not started by a launcher that is still there to print it: print it here
    Path(folder, f"rank{launched_rank():05d}").write_text(f"{err.exit_code}\n{type(err).__name__}\n{err}", encoding="utf-8")
    return True


def _first_error(errors: Path) -> Optional[SymnetsError]:
    """The lowest rank's error, preferring one that is not only the loss of another process."""
    found = []
    for path in sorted(errors.glob("rank*")):
        code, kind, message = (path.read_text(encoding="utf-8").split("\n", 2) + ["", ""])[:3]
        found.append((kind == ProcessLost.__name__, code, message))
    if not found:
        return None
    _, code, message = min(found, key=lambda item: item[0])  # stable: the lowest rank of the preferred kind
    error = SymnetsError(message)
    error.exit_code = int(code) if code.isdigit() else 1
    return error
