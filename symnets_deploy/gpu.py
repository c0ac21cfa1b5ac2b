"""TensorRT and the CUDA GPU, found one way for building engines (export) and running them (predict).

The GPU is asked through cuda-python's runtime bindings (``cuda.bindings.runtime``; ``cuda.cudart``
in older releases), so the runtime stays torch-free. What the machine lacks (TensorRT, cuda-python,
a visible GPU) is exit code 4 with one line saying where engines are built and run instead.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from symnets_deploy.errors import MissingDependencyError

GPU_HINT = "TensorRT engines are built and run on a machine with an NVIDIA GPU (pip install 'symnets-deploy[trt]' there); elsewhere use the .onnx"


@dataclass(frozen=True)
class CudaDevice:
    """A CUDA GPU: what an engine is built for, and what a plan's sidecar is checked against."""

    name: str
    compute_capability: str  # "major.minor"
    index: int = 0


def require_tensorrt(purpose: str) -> ModuleType:
    """Import TensorRT, or fail with one line saying what to install, and where (exit code 4)."""
    try:
        return importlib.import_module("tensorrt")
    except ImportError as exc:
        raise MissingDependencyError(f"{purpose} needs 'tensorrt' (import error: {exc}); {GPU_HINT}") from None
    except OSError as exc:  # the wheel is there but its libnvinfer cannot be loaded
        raise MissingDependencyError(f"{purpose}: 'tensorrt' is installed but cannot load its libraries ({exc}); {GPU_HINT}") from None


def cudart(purpose: str) -> ModuleType:
    """cuda-python's runtime module, under its current or its pre-12.6 name (exit code 4 when absent)."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError(f"{purpose} needs cuda-python (import of cuda.bindings.runtime failed); {GPU_HINT}")


def cuda_call(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` result, raising on a CUDA error.

    A CUDA failure once a GPU was found is not something a user can fix from the command
    line, so it stays a ``RuntimeError`` with a traceback (STYLE.md: a bug, exit code 1).
    """
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise RuntimeError(f"CUDA {what} failed: {getattr(err, 'name', err)}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cuda_device(purpose: str, index: int = 0, runtime: ModuleType | None = None) -> CudaDevice:
    """Name and compute capability of CUDA device ``index``.

    Args:
        purpose: what needs the GPU, for the message ("running a TensorRT plan").
        index: CUDA device ordinal (after ``CUDA_VISIBLE_DEVICES``).
        runtime: cuda-python's runtime module; imported when not given.

    Raises:
        MissingDependencyError: cuda-python is missing, or no device ``index`` is visible (exit code 4).
        RuntimeError: the CUDA runtime failed otherwise.
    """
    runtime = runtime or cudart(purpose)
    err, count = runtime.cudaGetDeviceCount()
    if int(err) != 0 or count <= index:
        seen = f"CUDA reports {getattr(err, 'name', err)}" if int(err) != 0 else f"{count} visible"
        raise MissingDependencyError(f"{purpose} needs a CUDA GPU (device {index}), and none is visible here ({seen}); {GPU_HINT}")
    props = cuda_call(runtime.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
    return CudaDevice(name.rstrip("\x00"), f"{props.major}.{props.minor}", index)
