"""One interface for every inference backend (after Polygraphy's runners).

Public methods check state and inputs; subclasses implement only the ``_*_impl`` methods.
Sessions and engines are created on ``activate()`` (or ``__enter__``), never in ``__init__``,
so constructing a backend is free and cannot fail on a missing library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from symnets_deploy.card import ModelCard
from symnets_deploy.errors import UsageError
from symnets_deploy.monitoring import Profile

#: Graph I/O names (DESIGN.md section 2).
INPUT_NAME = "images"
OUTPUT_NAMES = ("logits", "probs")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (None = dynamic) and dtype of a graph input."""

    name: str
    shape: tuple[Optional[int], ...]
    dtype: str


@dataclass(frozen=True)
class BatchLimits:
    """Which batch sizes a backend accepts, and whether every call should use the same one.

    Attributes:
        min: fewest rows per ``infer`` call (a TensorRT profile's ``min``), >= 1.
        max: most rows per call; None: unbounded (dynamic batch axis).
        fixed: pad every batch to one size; set where an engine is built per input
            shape (ONNX Runtime's TensorRT provider), so a short last batch costs no rebuild.
    """

    min: int = 1
    max: Optional[int] = None
    fixed: bool = False

    def fit(self, requested: int) -> int:
        """The batch size closest to ``requested`` that these limits allow (>= 1)."""
        size = max(int(requested), self.min, 1)
        return size if self.max is None else min(size, self.max)

    def rows_for(self, count: int, batch_size: int) -> int:
        """Rows to run ``count`` images in (``count <= batch_size``); the extra rows are padding."""
        return batch_size if self.fixed else max(count, self.min)


class Backend:
    """A model that maps preprocessed images to logits and probabilities.

    Use as a context manager::

        with OrtBackend("model.onnx") as backend:
            out = backend.infer(batch)   # {"logits": [N,K], "probs": [N,K]}

    Attributes:
        name: short backend name for reports ("onnxruntime", "tensorrt", "torch").
        inference_time: seconds spent in the last ``infer`` call.
    """

    name = "backend"

    def __init__(self) -> None:
        self.is_active = False
        self.inference_time = 0.0

    # -- public, checked -------------------------------------------------------------------
    def activate(self) -> "Backend":
        """Create the session/engine. Idempotent."""
        if not self.is_active:
            self._activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        """Release the session/engine. Idempotent."""
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def card(self) -> ModelCard:
        """The model card this backend's artifact carries (activates if needed)."""
        self.activate()
        return self._card_impl()

    def reference_profile(self) -> Optional[Profile]:
        """The artifact's reference profile (``monitoring.Profile``), or None when it carries none (activates if needed).

        Raises:
            ArtifactError: a profile is there but unreadable.
        """
        self.activate()
        return self._reference_profile_impl()

    def precision(self) -> str:
        """The artifact's numeric precision, ``"fp32"``, ``"fp16"`` or ``"int8"`` (activates if needed).

        Inputs and outputs are float32 whatever it is; it tells which variant of the model runs.
        """
        self.activate()
        return self._precision_impl()

    def output_classes(self) -> Optional[int]:
        """K of the ``probs`` output [N,K] as the artifact declares it; None when it is dynamic or unknown."""
        self.activate()
        return self._output_classes_impl()

    def input_spec(self) -> TensorSpec:
        """The ``images`` input: (None, 3, H, W) float32 unless the artifact says otherwise."""
        self.activate()
        return self._input_spec_impl()

    def batch_limits(self) -> BatchLimits:
        """Batch sizes this artifact accepts (activates if needed).

        Returns:
            ``BatchLimits``; by default a fixed batch dimension in the input spec, else (1, None).
        """
        self.activate()
        return self._batch_limits_impl()

    def max_concurrency(self) -> int:
        """How many ``infer`` calls pay off running at once, from different threads (activates if needed).

        Returns:
            1 unless the backend is thread-safe and gains from it (ONNX Runtime on the CPU runs
            two single-threaded calls side by side rather than one call on two threads).
        """
        self.activate()
        return self._max_concurrency_impl()

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            images: float32 [N,3,H,W] RGB values 0..255 (``preprocess.to_batch`` output).

        Returns:
            ``{"logits": float32 [N,K], "probs": float32 [N,K]}``.

        Raises:
            UsageError: wrong dtype or shape for this model.
        """
        self.activate()
        spec = self._input_spec_impl()
        if not isinstance(images, np.ndarray) or images.dtype != np.float32:
            raise UsageError(f"{self.name}: input must be a float32 numpy array, got {getattr(images, 'dtype', type(images).__name__)}")
        if images.ndim != len(spec.shape) or any(d is not None and d != s for d, s in zip(spec.shape, images.shape)):
            raise UsageError(f"{self.name}: input shape {tuple(images.shape)} does not fit {spec.shape}")
        start = time.perf_counter()
        out = self._infer_impl(np.ascontiguousarray(images))
        self.inference_time = time.perf_counter() - start
        return out

    def __enter__(self) -> "Backend":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- for subclasses -------------------------------------------------------------------
    def _activate_impl(self) -> None:
        raise NotImplementedError

    def _deactivate_impl(self) -> None:
        pass

    def _card_impl(self) -> ModelCard:
        raise NotImplementedError

    def _input_spec_impl(self) -> TensorSpec:
        raise NotImplementedError

    def _infer_impl(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _max_concurrency_impl(self) -> int:
        return 1

    def _reference_profile_impl(self) -> Optional[Profile]:
        return None

    def _precision_impl(self) -> str:
        return "fp32"

    def _output_classes_impl(self) -> Optional[int]:
        return None

    def _batch_limits_impl(self) -> BatchLimits:
        batch = self._input_spec_impl().shape[0]
        return BatchLimits() if batch is None else BatchLimits(batch, batch, fixed=True)
