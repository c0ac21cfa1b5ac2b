"""int8 at the ONNX level for CPUs: ONNX Runtime static quantization, QDQ format.

Weights are int8 per output channel; activations are uint8 (x86's fast u8 x s8 path) with ranges
calibrated on real target-domain images preprocessed by the runtime's one implementation. ONNX
Runtime fuses the QDQ pairs into QLinearConv/QLinearAdd kernels; the classifier (Gemm), Slice
and Softmax stay float32, so ``logits`` and ``probs`` are not rounded to 8 bits.

Only Conv, Clip (ReLU6) and Add are quantized: leaving Clip out puts the conv outputs' raw
ranges into the quantizer and multiplies the error several times. The calibration method was
chosen by measurement (``python bench/int8_calibration.py``, table in docs/results.md): MinMax
keeps top-1 agreement highest, calibrates fastest and in constant memory (Entropy over 295
images needed 17 GB). These int8 models are made for ONNX Runtime on CPUs; TensorRT wants
symmetric int8 and gets fp16 instead.
"""

from __future__ import annotations

import os
import tempfile
from typing import Iterator

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.export.calibration import spread

#: Calibration method (``onnxruntime.quantization.CalibrationMethod`` member name).
CALIBRATION_METHOD = "MinMax"
#: Calibration images: an evenly spread, deterministic subset of the check images.
DEFAULT_CALIBRATION_SIZE = 128
#: Operators quantized; everything else stays float32.
QUANTIZED_OPS = ("Conv", "Clip", "Add")
_CALIBRATION_BATCH = 16


def _quantization():
    return require("onnxruntime.quantization", extra="cpu", purpose="int8 quantization")


def calibration_subset(images: np.ndarray, size: int = DEFAULT_CALIBRATION_SIZE) -> np.ndarray:
    """At most ``size`` images, evenly spread over ``images`` [N,3,H,W] (deterministic)."""
    if size < 1:
        raise UsageError(f"--calibration-size must be >= 1, got {size}")
    return images[spread(range(len(images)), size)]


def _reader(images: np.ndarray):
    """ONNX Runtime's ``CalibrationDataReader`` over fixed batches of ``images``."""
    base = _quantization().CalibrationDataReader

    class BatchReader(base):
        def __init__(self) -> None:
            self._batches: Iterator = iter([])
            self.rewind()

        def get_next(self):
            return next(self._batches, None)

        def rewind(self) -> None:
            # Equal batches: the histogram calibrators stack every batch's outputs into one array.
            size = max(d for d in range(1, _CALIBRATION_BATCH + 1) if len(images) % d == 0)
            self._batches = iter({INPUT_NAME: images[i : i + size]} for i in range(0, len(images), size))

    return BatchReader()


def quantize_int8(model, calibration: np.ndarray, *, method: str = CALIBRATION_METHOD):
    """An int8 (QDQ) copy of an fp32 ``onnx.ModelProto``, activations calibrated on ``calibration``.

    Args:
        model: the fp32 model (input ``images`` float32 [N,3,H,W] RGB 0..255).
        calibration: float32 [n,3,H,W] real images, preprocessed (``calibration_subset``).
        method: ``CalibrationMethod`` member name (MinMax, Entropy, Percentile, Distribution).

    Returns:
        A new ModelProto; the input is not modified. Its ``metadata_props`` are the caller's to set.

    Raises:
        MissingDependencyError: onnxruntime (with its quantization tools) or onnx missing.
        UsageError: an unknown calibration method or no calibration images.
        ArtifactError: ONNX Runtime could not quantize the model.
    """
    onnx = require("onnx", extra="export", purpose="int8 quantization")
    q = _quantization()
    if not hasattr(q.CalibrationMethod, method):
        raise UsageError(f"unknown calibration method {method!r} (valid: {', '.join(m.name for m in q.CalibrationMethod)})")
    if len(calibration) == 0:
        raise UsageError("int8 quantization needs at least one calibration image")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="symnets_int8_") as work:
        fp32, prepared, quantized = (os.path.join(work, name) for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        onnx.save_model(model, fp32)
        try:
            # Shape inference and constant folding first, as ONNX Runtime's quantization guide asks.
            quant_pre_process(fp32, prepared)
            q.quantize_static(
                prepared, quantized, _reader(np.ascontiguousarray(calibration, dtype=np.float32)),
                quant_format=q.QuantFormat.QDQ, per_channel=True, activation_type=q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8, calibrate_method=getattr(q.CalibrationMethod, method),
                op_types_to_quantize=list(QUANTIZED_OPS),
            )
        except (RuntimeError, ValueError) as exc:  # onnxruntime's Fail/InvalidGraph derive from RuntimeError
            raise ArtifactError(f"ONNX Runtime could not quantize the model ({' '.join(str(exc).split())[:300]})") from None
        return onnx.load_model(quantized)
