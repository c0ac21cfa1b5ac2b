"""Which layers to keep in fp32 for the fp16 export: error of each policy against the fp32 ONNX.

Prints a table (max |logit diff|, max |prob diff|, top-1 flips) over the checkpoint's target
domain images (or --images), for: all fp16, depthwise convs fp32 (the shipped policy),
first conv fp32, head fp32.

    python bench/fp16_sensitivity.py --checkpoint runs/a2w/last.pt
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxconverter_common import float16

from symnets_deploy.export.calibration import collect_images
from symnets_deploy.export.fp16 import depthwise_convs, isolate_outputs
from symnets_deploy.export.onnx import to_model_proto
from symnets_deploy.train.checkpoint import model_from_checkpoint


def _run(proto, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    outs = [session.run(["logits", "probs"], {"images": images[i : i + 64]}) for i in range(0, len(images), 64)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", default=None, help="folder of real images (default: the card's target domain)")
    parser.add_argument("--max-images", type=int, default=10_000)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="the float32 number", category=UserWarning)  # one per tiny weight
    model, card, _ = model_from_checkpoint(Path(args.checkpoint))
    images = np.concatenate(collect_images(card, Path(args.images) if args.images else None, max_images=args.max_images).batches(64))
    proto = to_model_proto(model, card.head, card.input_size)
    ref_logits, ref_probs = _run(proto, images)
    convs = [n.name for n in proto.graph.node if n.op_type == "Conv"]
    policies = {
        "all fp16": [],
        "depthwise convs fp32 (shipped)": depthwise_convs(proto),
        "first conv fp32": convs[:1],
        "head fp32": [n.name for n in proto.graph.node if n.op_type in ("Gemm", "Softmax", "ReduceMean")],
    }
    print(f"\n{card.backbone}, {len(images)} images, vs the fp32 ONNX on ONNX Runtime CPU")
    print("| policy | fp32 nodes | max abs logit diff | max abs prob diff | top-1 flips |")
    print("|---|---|---|---|---|")
    for name, blocked in policies.items():
        prepared = onnx.ModelProto()
        prepared.CopyFrom(proto)
        isolate_outputs(prepared)
        logits, probs = _run(float16.convert_float_to_float16(prepared, keep_io_types=True, node_block_list=blocked), images)
        flips = int((logits.argmax(1) != ref_logits.argmax(1)).sum())
        print(f"| {name} | {len(blocked)} | {np.abs(logits - ref_logits).max():.4f} | {np.abs(probs - ref_probs).max():.4f} | {flips}/{len(images)} |")


if __name__ == "__main__":
    main()
