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

__all__ = ["BACKENDS", "INPUT_NAME", "OUTPUT_NAMES", "Backend", "BatchLimits", "OrtBackend", "Provider", "TensorSpec", "TrtBackend", "open_backend"]


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
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: engine file not found")
    device = parse_choice(Device, device, "device")
    factory = BACKENDS.get(path.suffix.lower())
    if factory is None:
        raise UsageError(f"{path}: unknown engine type {path.suffix!r} (valid: {', '.join(BACKENDS)})")
    if threads < 0:
        raise UsageError(f"--threads must be >= 0, got {threads}")
    return factory(path, device, None if provider is None else str(getattr(provider, "value", provider)), threads)
