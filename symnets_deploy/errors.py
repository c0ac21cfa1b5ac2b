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


class Interrupted(SymnetsError):
    """Training stopped by SIGINT or SIGTERM after writing a checkpoint; exit 128 + signal (130, 143)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class ImageError(SymnetsError):
    """One image could not be read or decoded; batch jobs turn it into an error row."""

    exit_code = 3
