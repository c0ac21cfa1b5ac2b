"""Inference backends (ONNX Runtime, TensorRT) behind one interface, chosen by file suffix.

Adding a backend means one new module and one row in ``BACKENDS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend, BatchLimits, TensorSpec
from symnets_deploy.backends.ort import OrtBackend, Provider
from symnets_deploy.backends.trt import TrtBackend
from symnets_deploy.enums import Device, parse_choice
from symnets_deploy.errors import UsageError
from symnets_deploy.run_files import ARTIFACTS, CHECKPOINT

__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "Backend", "BatchLimits", "OrtBackend", "Provider", "TensorSpec", "TrtBackend", "model_path", "open_backend"]


def _ort(path: Path, device: Device, provider: Optional[str], threads: int) -> Backend:
    return OrtBackend(path, device=device, provider=provider, threads=threads)


def _trt(path: Path, device: Device, provider: Optional[str], threads: int) -> Backend:
    if provider is not None:
        raise UsageError(f"{path}: --provider chooses an ONNX Runtime provider; a .plan always runs on TensorRT")
    return TrtBackend(path, device=device)


#: Artifact suffix -> factory ``(path, device, provider, threads) -> Backend``.
BACKENDS: dict[str, Callable[[Path, Device, Optional[str], int], Backend]] = {
    ".onnx": _ort,
    ".plan": _trt,
}


#: Suffixes of PyTorch checkpoints, which only ``symnets export`` (and ``verify``, ``info``) read.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def model_path(path: str | Path, what: str = "engine file") -> Path:
    """An exported model a user named (``.onnx`` or ``.plan``), checked before any image is read.

    A run folder or a checkpoint is what a user has after ``symnets train``: the message names the model files
    inside the folder, or says to run ``symnets export`` first.

    Args:
        what: the name of the file in the "not found" message (``engine file``, ``artifact``).

    Raises:
        UsageError: nothing at ``path``, a folder, or a training checkpoint.
    """
    path = Path(path)
    export_first = "run 'symnets export --checkpoint {}' first (it writes {})"
    if path.is_dir():
        inside = [name for name in ARTIFACTS if (path / name).is_file()]
        if inside:
            raise UsageError(f"{path}: is a folder, not a model file; it holds {', '.join(inside)}: give one of them, e.g. {path / inside[0]}")
        if (path / CHECKPOINT).is_file():
            raise UsageError(f"{path}: is a run folder without an exported model; " + export_first.format(path, path / ARTIFACTS[0]))
        raise UsageError(f"{path}: is a folder, not a model file (model.onnx or model.plan, written by 'symnets export')")
    if not path.exists():
        raise UsageError(f"{path}: {what} not found")
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        raise UsageError(f"{path}: is a training checkpoint, not an exported model; " + export_first.format(path, path.parent / ARTIFACTS[0]))
    return path


def open_backend(path: str | Path, *, device: Device | str = Device.auto, provider: Optional[str] = None, threads: int = 0) -> Backend:
    """The backend for an artifact, chosen by its suffix; nothing is loaded until ``activate()``.

    Args:
        path: an ``.onnx`` or ``.plan`` file.
        device: ``auto``, ``cpu`` or ``cuda``.
        provider: ONNX Runtime provider name (``tensorrt``, ``cuda``, ``cpu``), ``.onnx`` only.
        threads: inference threads in total (0: one per CPU core; ignored by TensorRT).

    Returns:
        An inactive ``Backend``.

    Raises:
        UsageError: missing file, unknown suffix or device, or an option the backend lacks.
    """
    path = model_path(path)
    device = parse_choice(Device, device, "device")
    factory = BACKENDS.get(path.suffix.lower())
    if factory is None:
        raise UsageError(f"{path}: unknown engine type {path.suffix!r} (valid: {', '.join(BACKENDS)})")
    if threads < 0:
        raise UsageError(f"--threads must be >= 0, got {threads}")
    return factory(path, device, None if provider is None else str(getattr(provider, "value", provider)), threads)
