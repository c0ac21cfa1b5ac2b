"""One rule for every command that writes a file: never over a file it reads.

``symnets predict -e m.onnx imgs -o m.onnx`` once replaced the model with a CSV, and ``-o imgs/x.png``
an input image. Every writer checks its output against what the command reads (the model, its
sidecar and check report, the input images) by file identity, so a symlink, a hard link or
another spelling of the same path is caught too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Optional

from symnets_deploy.errors import UsageError
from symnets_deploy.run_files import ARTIFACT_COMPANIONS



def artifact_files(artifact: str | Path) -> list[Path]:
    """The artifact and the files beside it that belong to it (``run_files.ARTIFACT_COMPANIONS``)."""
    artifact = Path(artifact)
    return [artifact, *(artifact.with_name(artifact.name + suffix) for suffix in ARTIFACT_COMPANIONS)]


def _identity(path: Path) -> Optional[tuple[int, int]]:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def refuse_overwriting(output: Optional[str | Path], reads: Iterable[str | Path], option: str) -> None:
    """Raise when ``output`` is one of the files the command reads.

    Args:
        output: the file about to be written (``"-"`` or None: nothing to check).
        reads: every file the command reads (model, companions, inputs); missing ones are skipped.
        option: the option that named ``output``, for the message (``--output``, ``--json``, ...).

    Raises:
        UsageError: ``output`` exists and is the same file as one of ``reads``.
    """
    if output is None or str(output) == "-":
        return
    target = _identity(Path(output))
    if target is None:  # a file that does not exist yet overwrites nothing
        return
    for path in reads:
        if _identity(Path(path)) == target:
            raise UsageError(f"{output}: {option} would overwrite {path}, which this command reads; choose another file (nothing was written)")
