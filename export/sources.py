"""What an export starts from: a checkpoint (reference: PyTorch) or an fp32 ONNX of this package
(reference: that ONNX in ONNX Runtime). Both hand the producers an fp32 graph and a reference
``Backend``, so every format and precision is produced and checked the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from symnets_deploy._optional import require
from symnets_deploy.backends.base import Backend
from symnets_deploy.backends.ort import OrtBackend
from symnets_deploy.card import ONNX_WEIGHTS_KEY, ModelCard
from symnets_deploy.enums import Head


@dataclass(frozen=True)
class CheckpointSource:
    """A trained SymNet from ``model_from_checkpoint``."""

    model: Any  # SymNet

    def fp32_graph(self, head: Head, image_size: int, opset: int):
        from symnets_deploy.export.onnx import to_model_proto

        return to_model_proto(self.model, head, image_size, opset)

    def weights(self) -> str:
        from symnets_deploy.train.checkpoint import weights_sha256

        return weights_sha256(self.model)

    def reference(self, head: Head, card: ModelCard) -> Backend:
        from symnets_deploy.export.reference import TorchReference

        return TorchReference(self.model, head, card=card)


@dataclass(frozen=True)
class OnnxSource:
    """An fp32 ONNX exported by this package (``load_exported_fp32``): graph and card already checked."""

    path: Path
    graph: Any  # onnx.ModelProto

    def fp32_graph(self, head: Head, image_size: int, opset: int):
        copy = require("onnx", extra="export", purpose="ONNX conversion").ModelProto()
        copy.CopyFrom(self.graph)
        return copy

    def weights(self) -> Optional[str]:
        return {p.key: p.value for p in self.graph.metadata_props}.get(ONNX_WEIGHTS_KEY)

    def reference(self, head: Head, card: ModelCard) -> Backend:
        backend = OrtBackend(self.path, device="cpu")
        backend.name = "onnxruntime-fp32"
        return backend
