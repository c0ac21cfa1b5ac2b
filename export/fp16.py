"""fp16 at the ONNX level: fp16 weights and compute, float32 ``images``/``logits``/``probs``.

TensorRT 11 builds only strongly typed networks, so precision is decided here, in the graph,
by onnxconverter-common's maintained converter (``keep_io_types=True``), not by builder flags.

Every node is converted. On the GPU-trained fixture (``../shared/fixtures/a2w_lite0_h200.onnx``,
all 295 webcam images) the fp16 error is spread through the network: keeping depthwise
convolutions, or the single most sensitive nodes, in fp32 does not lower the error enough to
pay for the casts around them (``python bench/fp16_sensitivity.py``; table in docs/results.md).
"""

from __future__ import annotations

import warnings
from typing import Sequence

from symnets_deploy._optional import require

#: Suffix of the internal tensor that feeds a graph output through an Identity node.
_VALUE_SUFFIX = "__value"


def isolate_outputs(model) -> None:
    """Make every graph output the sole product of an Identity node (in place).

    With ``keep_io_types`` the converter renames the producer of a graph output and casts it back
    to float32, but a node that also reads that tensor (Softmax reads ``logits``) is left reading
    the float32 name while its own output is typed fp16, and the model no longer type-checks.
    Reading an internal copy instead keeps the converted graph consistent.
    """
    helper = require("onnx", extra="export", purpose="fp16 conversion").helper
    outputs = [o.name for o in model.graph.output]
    internal = {name: name + _VALUE_SUFFIX for name in outputs}
    for node in model.graph.node:
        for i, name in enumerate(node.output):
            if name in internal:
                node.output[i] = internal[name]
        for i, name in enumerate(node.input):
            if name in internal:
                node.input[i] = internal[name]
    for name in outputs:
        model.graph.node.append(helper.make_node("Identity", [internal[name]], [name], name=f"output_{name}"))


def depthwise_convs(model) -> list[str]:
    """Names of the Conv nodes with ``group > 1``."""
    return [
        node.name for node in model.graph.node
        if node.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in node.attribute)
    ]


def convert_to_fp16(model, keep_fp32: Sequence[str] = ()):
    """An fp16 copy of an fp32 ``onnx.ModelProto`` with float32 inputs and outputs.

    Args:
        model: the fp32 model.
        keep_fp32: names of nodes to leave in float32 (the converter casts around them).

    Returns:
        A new ModelProto; the input is not modified.

    Raises:
        MissingDependencyError: onnxconverter-common is not installed.
    """
    onnx = require("onnx", extra="export", purpose="fp16 conversion")
    float16 = require("onnxconverter_common.float16", extra="export", purpose="fp16 conversion")
    prepared = onnx.ModelProto()
    prepared.CopyFrom(model)
    isolate_outputs(prepared)
    with warnings.catch_warnings():
        # One warning per weight below fp16's smallest normal: expected, and checked by the equivalence test.
        warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)
        return float16.convert_float_to_float16(prepared, keep_io_types=True, node_block_list=list(keep_fp32))
