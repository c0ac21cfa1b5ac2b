"""symnets-deploy: the torch-free runtime for SymNets domain-adapted classifiers.

An edge application imports only this package (plus onnxruntime or tensorrt); training and
export live in the ``train``, ``export`` and ``cli`` subpackages, which need the extras.

    from symnets_deploy import Predictor
    predictor = Predictor.load("model.onnx")

``Predictor`` and ``Prediction`` are imported on first use, so ``import symnets_deploy``
stays cheap and loads neither numpy, Pillow nor any inference library.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["Prediction", "Predictor", "__version__"]

_LAZY = {"Predictor": "symnets_deploy.predictor", "Prediction": "symnets_deploy.predictor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'symnets_deploy' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
