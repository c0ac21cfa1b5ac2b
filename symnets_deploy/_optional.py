"""Optional heavy dependencies, imported only inside the function that needs them.

The runtime must import without torch, onnxruntime or tensorrt; a missing extra becomes one
clear line naming what to install instead of an ImportError traceback.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from symnets_deploy.errors import MissingDependencyError


def require(module: str, *, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or explain which extra provides it.

    Args:
        module: dotted module name, e.g. ``"onnxruntime"``.
        extra: the ``symnets-deploy[extra]`` that installs it.
        purpose: what the caller wanted to do, for the message ("ONNX export").

    Returns:
        The imported module.

    Raises:
        MissingDependencyError: the import failed (exit code 4).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs '{module}': pip install 'symnets-deploy[{extra}]' (import error: {exc})"
        ) from exc


def is_available(module: str) -> bool:
    """Whether ``module`` could be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False
