"""ONNX export (DESIGN.md section 2): one self-contained file, normalisation inside, card in metadata.

Input ``images`` float32 [N,3,H,W] RGB 0..255 with a dynamic batch axis; outputs ``logits`` and
``probs`` [N,K] of the deployed head. Built with torch's ``torch.export``-based exporter (the
maintained one; the TorchScript exporter is deprecated), which emits opset 18 or newer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import torch

from symnets_deploy import __version__
from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES
from symnets_deploy.card import ONNX_CARD_KEY, ModelCard
from symnets_deploy.enums import Head, Precision
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.export.fp16 import convert_to_fp16
from symnets_deploy.export.reference import DeployWrapper
from symnets_deploy.train.model import SymNet

#: Metadata key recording the artifact's precision (the card describes the model, not the file).
PRECISION_KEY = "symnets.precision"
DEFAULT_OPSET = 18
MIN_OPSET = 18


def _onnx():
    return require("onnx", extra="export", purpose="ONNX export")


def to_model_proto(model: SymNet, head: Head | str, image_size: int, opset: int = DEFAULT_OPSET):
    """Trace G + the deployed head into an fp32 ``onnx.ModelProto`` with a dynamic batch axis.

    Raises:
        UsageError: opset below ``MIN_OPSET``.
        ArtifactError: the exporter produced another opset than asked for.
    """
    if opset < MIN_OPSET:
        raise UsageError(f"opset {opset} is not supported: the torch.export-based ONNX exporter emits opset {MIN_OPSET} or newer")
    require("onnxscript", extra="export", purpose="ONNX export")
    wrapper = DeployWrapper(model, head).eval().float()
    # Two example images: a batch of 1 would let torch.export specialise the batch axis to 1.
    example = (torch.rand(2, 3, image_size, image_size) * 255.0,)
    program = torch.onnx.export(
        wrapper, example, None, input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset,
        dynamo=True, external_data=False, verbose=False, dynamic_shapes={"images": {0: torch.export.Dim("batch", min=1)}},
    )
    proto = program.model_proto
    version = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    if version != opset:
        raise ArtifactError(f"the ONNX exporter produced opset {version}, not the requested {opset}")
    return proto


def export_onnx(
    model: SymNet,
    card: ModelCard,
    out: Path,
    *,
    head: Optional[Head | str] = None,
    precision: Precision | str = Precision.fp32,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """Write the deployable ONNX of a trained SymNet to ``out``.

    Args:
        model: the trained network (``model_from_checkpoint``).
        card: the checkpoint's card; stored with ``head`` in ``metadata_props['symnets.card']``.
        out: destination file (callers pass a temp name and rename after the equivalence check).
        head: deployed classifier (default: the card's).
        precision: fp32, or fp16 weights and compute with float32 I/O.
        opset: ONNX opset (>= 18).

    Returns:
        ``out``. The file is self-contained (no external data) and passes ``onnx.checker``.
    """
    onnx = _onnx()
    head = Head(head or card.head)
    precision = Precision(precision)
    proto = to_model_proto(model, head, card.input_size, opset)
    if precision is Precision.fp16:
        proto = convert_to_fp16(proto)
    proto.producer_name, proto.producer_version = "symnets-deploy", __version__
    card = card.replace(head=head.value)
    onnx.helper.set_model_props(proto, {ONNX_CARD_KEY: card.to_json(), PRECISION_KEY: precision.value})
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, os.fspath(out), save_as_external_data=False)
    # Checking the saved path (not the proto) works for models of any size; full_check runs shape inference.
    try:
        onnx.checker.check_model(os.fspath(out), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{out}: exported model fails onnx.checker ({' '.join(str(exc).split())[:300]})") from None
    return out


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (external data is not loaded).

    Raises:
        ArtifactError: the file is missing or is not an ONNX model.
    """
    onnx = _onnx()
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    try:
        proto = onnx.load_model(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: all mean "not an ONNX model"
        raise ArtifactError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    return {p.key: p.value for p in proto.metadata_props}


def onnx_precision(path: Path) -> Precision:
    """The precision an exported ONNX records (fp32 when it records none)."""
    value = read_onnx_metadata(path).get(PRECISION_KEY, Precision.fp32.value)
    try:
        return Precision(value)
    except ValueError:
        raise ArtifactError(f"{path}: unknown precision {value!r} in metadata key {PRECISION_KEY!r}") from None
