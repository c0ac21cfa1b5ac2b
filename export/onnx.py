"""ONNX export (DESIGN.md section 2): one self-contained file, normalisation inside, card in metadata.

Input ``images`` float32 [N,3,H,W] RGB 0..255 with a dynamic batch axis; outputs ``logits`` and
``probs`` [N,K] of the deployed head. Built with torch's ``torch.export``-based exporter (the
maintained one; the TorchScript exporter is deprecated), which emits opset 18 or newer.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from symnets_deploy import __version__
from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES
from symnets_deploy.card import ONNX_CARD_KEY, ONNX_PRECISION_KEY, ONNX_WEIGHTS_KEY, ModelCard
from symnets_deploy.enums import Head, Precision
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.export.fp16 import convert_to_fp16
from symnets_deploy.export.int8 import quantize_int8
from symnets_deploy.export.reference import DeployWrapper
from symnets_deploy.train.model import SymNet

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
    calibration: Optional[np.ndarray] = None,
) -> Path:
    """Write the deployable ONNX of a trained SymNet to ``out``.

    Args:
        model: the trained network (``model_from_checkpoint``).
        card: the checkpoint's card; stored with ``head`` in ``metadata_props['symnets.card']``.
        out: destination file (callers pass a temp name and rename after the equivalence check).
        head: deployed classifier (default: the card's).
        precision: fp32; fp16 weights and compute; or int8 (QDQ), all with float32 I/O.
        opset: ONNX opset (>= 18).
        calibration: int8 only: float32 [n,3,H,W] real images for the activation ranges.

    Returns:
        ``out``. The file is self-contained (no external data) and passes ``onnx.checker``.
    """
    head = Head(head or card.head)
    proto = to_model_proto(model, head, card.input_size, opset)
    return write_variant(proto, card.replace(head=head.value), out, precision=precision, calibration=calibration)


def write_variant(
    fp32, card: ModelCard, out: Path, *, precision: Precision | str, calibration: Optional[np.ndarray] = None, weights: Optional[str] = None,
) -> Path:
    """Convert an fp32 ``onnx.ModelProto`` to ``precision`` and save it with the card and precision in its metadata.

    Raises:
        UsageError: int8 without calibration images.
        ArtifactError: the saved model fails ``onnx.checker``, or quantization failed.
    """
    onnx = _onnx()
    precision = Precision(precision)
    if precision is Precision.fp16:
        proto = convert_to_fp16(fp32)
    elif precision is Precision.int8:
        if calibration is None:
            raise UsageError("int8 export needs calibration images")
        proto = quantize_int8(fp32, calibration)
    else:
        proto = fp32
    proto.producer_name, proto.producer_version = "symnets-deploy", __version__
    props = {ONNX_CARD_KEY: card.to_json(), ONNX_PRECISION_KEY: precision.value, **({ONNX_WEIGHTS_KEY: weights} if weights else {})}
    onnx.helper.set_model_props(proto, props)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, os.fspath(out), save_as_external_data=False)
    # Checking the saved path (not the proto) works for models of any size; full_check runs shape inference.
    try:
        onnx.checker.check_model(os.fspath(out), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ArtifactError(f"{out}: exported model fails onnx.checker ({' '.join(str(exc).split())[:300]})") from None
    return out


def load_exported_fp32(path: Path):
    """An fp32 ONNX written by this package, for conversion to another precision (``--from-onnx``).

    Returns:
        ``(proto, card)``.

    Raises:
        ArtifactError: not an ONNX model, no model card, external data, or not fp32.
    """
    onnx = _onnx()
    path = Path(path)
    proto = _load(path)
    metadata = {p.key: p.value for p in proto.metadata_props}
    if ONNX_CARD_KEY not in metadata:
        raise ArtifactError(f"{path}: no model card (metadata key {ONNX_CARD_KEY!r}); --from-onnx converts models exported by symnets")
    try:
        card = ModelCard.from_json(metadata[ONNX_CARD_KEY])
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None
    precision = metadata.get(ONNX_PRECISION_KEY, Precision.fp32.value)
    if precision != Precision.fp32.value:
        raise ArtifactError(f"{path}: is a {precision} model; convert from the fp32 ONNX")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise ArtifactError(f"{path}: has external data; --from-onnx needs a self-contained ONNX file")
    return proto, card


def onnx_weights(path: Path) -> Optional[str]:
    """The checkpoint-weights sha256 an exported ONNX records (None: exported before it was recorded)."""
    return read_onnx_metadata(path).get(ONNX_WEIGHTS_KEY)


def _load(path: Path):
    """An ONNX file as a ModelProto, external data not loaded.

    Raises:
        ArtifactError: the file is missing or is not an ONNX model.
    """
    onnx = _onnx()
    if not path.is_file():
        raise ArtifactError(f"{path}: ONNX file not found")
    try:
        return onnx.load_model(os.fspath(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError and friends: all mean "not an ONNX model"
        raise ArtifactError(f"{path}: not an ONNX model ({type(exc).__name__})") from None


def read_onnx_metadata(path: Path) -> dict[str, str]:
    """``metadata_props`` of an ONNX file as a dict (external data is not loaded).

    Raises:
        ArtifactError: the file is missing or is not an ONNX model.
    """
    return {p.key: p.value for p in _load(Path(path)).metadata_props}


def onnx_precision(path: Path) -> Precision:
    """The precision an exported ONNX records (fp32 when it records none)."""
    value = read_onnx_metadata(path).get(ONNX_PRECISION_KEY, Precision.fp32.value)
    try:
        return Precision(value)
    except ValueError:
        raise ArtifactError(f"{path}: unknown precision {value!r} in metadata key {ONNX_PRECISION_KEY!r}") from None
