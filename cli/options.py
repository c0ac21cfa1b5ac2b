"""Options shared by the commands that run an artifact (``predict``, ``evaluate``), the help panels, and the
checks of a file a user names on the command line, defined once."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from typer.core import TyperArgument

from symnets_deploy.enums import Device
from symnets_deploy.errors import UsageError
from symnets_deploy.run_files import CHECKPOINT

#: Help panels: options are grouped under these titles in ``--help``.
RUNTIME = "Runtime"

BATCH_SIZE = typer.Option(16, "--batch-size", min=1, metavar="N", help="Images per inference call.", rich_help_panel=RUNTIME)
DEVICE = typer.Option(Device.auto, help="auto: TensorRT/CUDA when available, else CPU.", rich_help_panel=RUNTIME)
PROVIDER = typer.Option(None, case_sensitive=False, metavar="NAME", help="ONNX Runtime provider: tensorrt, cuda or cpu (overrides --device).", rich_help_panel=RUNTIME)
THREADS = typer.Option(0, min=0, metavar="N", help="Inference threads in total (0: one per CPU core).", rich_help_panel=RUNTIME)

def given(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (on the command line or in the environment), not its default."""
    return getattr(ctx.get_parameter_source(name), "name", "") in ("COMMANDLINE", "ENVIRONMENT")


def named_checkpoint(path: Path) -> Path:
    """A checkpoint typed on the command line (the file, or a run folder holding ``last.pt``), checked before any work.

    A path that leads to no checkpoint is bad usage (exit 2), like any missing input file; a file that is there but
    unreadable stays an ``ArtifactError`` (exit 5) when it is read. ``--resume`` has its own rules for a run folder.

    Raises:
        UsageError: nothing at ``path``, or a folder without ``last.pt``.
    """
    path = Path(path)
    if path.is_dir() and not (path / CHECKPOINT).exists():
        raise UsageError(f"{path}: checkpoint not found: the folder has no {CHECKPOINT} (not a run folder of 'symnets train', "
                         "or its run stopped before the first checkpoint)")
    if not path.exists():
        raise UsageError(f"{path}: checkpoint not found")
    return path


def named_model(path: Path, what: str = "engine file") -> Path:
    """An exported model typed on the command line, checked before any image is read (``backends.model_path``)."""
    from symnets_deploy.backends import model_path

    return model_path(path, what)


class PlainArguments:
    """Command mixin: positional arguments shown as a user types them, ``ARTIFACT`` and ``INPUTS...`` with
    the element's type, where Typer would show a Python name in braces (``{artifact}``) and a Python type
    (``<list[str]>``). Only how help is drawn changes; parsing is Typer's. Every command has it (``SymnetsCommand``)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if type(param) is TyperArgument:
                param.__class__ = _PlainArgument  # adds no state: only the three methods below differ


class _PlainArgument(TyperArgument):
    """Typer's argument, drawn as ``NAME`` / ``[NAME]`` / ``NAME...`` (upper case unless a metavar is given)."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar or self.name.upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw
        name = name if self.required else f"[{name}]"
        return name if self.nargs == 1 or "..." in name else name + "..."

    def display_type_rich(self, ctx) -> str | None:
        shown = super().display_type_rich(ctx)
        return re.sub(r"^<list\[(\w+)\]>$", lambda m: f"<{m[1].lower()}>", shown) if shown else shown
