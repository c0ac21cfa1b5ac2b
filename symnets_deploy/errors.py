"""User-facing errors, each with the process exit code the CLI maps it to.

Anything that is not a ``SymnetsError`` is a bug and deserves a traceback; these are the
failures a user can fix, so the CLI prints ``error: <message>`` and exits with ``exit_code``.
The codes are the table in STYLE.md section 6.
"""

from __future__ import annotations


class SymnetsError(Exception):
    """Base of every error a user can act on.

    Attributes:
        exit_code: process exit status the CLI uses for this error (1 is reserved for bugs).
    """

    exit_code: int = 1


class UsageError(SymnetsError):
    """Bad arguments or input paths (missing file, empty folder, mismatched class folders)."""

    exit_code = 2


class PartialFailure(SymnetsError):
    """A batch job finished, but some inputs failed (one error row each)."""

    exit_code = 3


class MissingDependencyError(SymnetsError):
    """An optional dependency (an extra of the distribution) is not installed."""

    exit_code = 4


class ArtifactError(SymnetsError):
    """An artifact (checkpoint, ONNX, engine, sidecar, card) is invalid or does not match."""

    exit_code = 5


class EquivalenceError(SymnetsError):
    """An exported artifact does not compute the same function as its checkpoint."""

    exit_code = 6


class DriftDetected(SymnetsError):
    """``--fail-on-drift``: the images predicted differ from the model's reference profile (see the summary)."""

    exit_code = 7


class TrainingDiverged(SymnetsError):
    """A training loss became NaN or infinite: the run stops, and no checkpoint with such weights is written."""

    exit_code = 8


class StorageError(SymnetsError):
    """The file system refused a read or a write (disk full, read-only, no permission, a file where a
    folder belongs); the message names the path and the cause."""

    exit_code = 9

    @classmethod
    def from_os_error(cls, err: OSError, path: object = None) -> "StorageError":
        """One line from an ``OSError``: the path (``path``, else the error's own file name) and the cause."""
        path = path if path is not None else err.filename if err.filename is not None else "a file"
        cause = err.strerror or str(err) or type(err).__name__
        hint = _STORAGE_HINTS.get(err.errno, "")
        return cls(f"{path}: {cause}{hint}")


_STORAGE_HINTS = {
    28: " (the disk is full: free space or write elsewhere)",
    30: " (a read-only file system: write elsewhere)",
    13: " (no permission: write elsewhere or change its permissions)",
    122: " (disk quota exceeded)",
}


class ProcessLost(SymnetsError):
    """``train --nproc N``: one of the training processes died (killed, out of memory), so all stopped."""

    exit_code = 10


class Interrupted(SymnetsError):
    """Training stopped by SIGINT, SIGTERM or SIGHUP (after writing a checkpoint once training has
    begun); exit 128 + signal (130, 143, 129)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ImageError(SymnetsError):
    """One image could not be read or decoded; batch jobs turn it into an error row."""

    exit_code = 3
