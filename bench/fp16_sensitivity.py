"""Which nodes to keep in fp32 for the fp16 export: per-node sensitivity on real images.

Against the fp32 ONNX (ONNX Runtime, CPU), with the export's own ``compare`` (Polygraphy's
statistics over all images), this measures:
  1. whole-graph policies: all fp16 (shipped), depthwise convolutions in fp32;
  2. every Conv/Gemm node kept in fp32 alone: how much of the all-fp16 error it removes;
  3. the k most helpful nodes of step 2 kept in fp32 together, k = 1, 2, 4, 8.
A node "measurably helps" when step 3 lowers the probability error's p99 and max by more than
the spread between two policies that should not matter. Prints Markdown tables.

    python bench/fp16_sensitivity.py                        # the GPU-trained fixture on webcam
    python bench/fp16_sensitivity.py --onnx model.onnx --images DATA/webcam --nodes 0
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

import onnx

from symnets_deploy.backends.ort import OrtBackend
from symnets_deploy.export.calibration import collect_images
from symnets_deploy.export.compare import compare
from symnets_deploy.export.fp16 import convert_to_fp16, depthwise_convs
from symnets_deploy.export.onnx import load_exported_fp32
from symnets_deploy.export.tolerances import TOLERANCES

SHARED = Path(__file__).resolve().parents[2] / "shared"


def measure(graph, blocked: list[str], reference: Path, batches, work: Path) -> tuple[float, float, float]:
    """(probs p99, probs max, top-1 agreement) of the fp16 graph with ``blocked`` nodes in fp32."""
    path = work / "candidate.onnx"
    onnx.save(convert_to_fp16(graph, keep_fp32=blocked), str(path))
    (cmp,) = compare(OrtBackend(reference, device="cpu"), [OrtBackend(path, device="cpu")], batches, tolerance=TOLERANCES["fp16"]).comparisons
    probs = cmp.outputs["probs"]
    return probs.stats["p99"], probs.max_abs, cmp.top1_agree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=SHARED / "fixtures" / "a2w_lite0_h200.onnx", help="an fp32 ONNX exported by symnets")
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "office_caltech10" / "webcam")
    parser.add_argument("--max-images", type=int, default=512)
    parser.add_argument("--nodes", type=int, default=-1, help="measure only the first N Conv/Gemm nodes one by one (-1: all, 0: skip steps 2-3)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    graph, card = load_exported_fp32(args.onnx)
    batches = collect_images(card, args.images, max_images=args.max_images).batches(64)
    images = sum(len(b) for b in batches)
    work = Path(tempfile.mkdtemp(prefix="fp16_sensitivity_"))
    run = lambda blocked: measure(graph, blocked, args.onnx, batches, work)  # noqa: E731

    def table(title: str, rows) -> None:
        print(f"\n{title}\n| policy | fp32 nodes | probs p99 | probs max | top-1 agreement |\n|---|---|---|---|---|")
        for name, blocked, (p99, worst, agree) in rows:
            print(f"| {name} | {len(blocked)} | {p99:.5f} | {worst:.4f} | {100 * agree:.2f} % |")

    base = run([])
    policies = [("all fp16 (shipped)", [], base), ("depthwise convs fp32", depthwise_convs(graph), run(depthwise_convs(graph)))]
    table(f"{args.onnx.name}, {images} images of {args.images}, vs the fp32 ONNX", policies)
    if args.nodes == 0:
        return
    candidates = [n.name for n in graph.graph.node if n.op_type in ("Conv", "Gemm")]
    candidates = candidates if args.nodes < 0 else candidates[: args.nodes]
    single = []
    for i, name in enumerate(candidates, 1):
        single.append((name, run([name])))
        print(f"  node {i}/{len(candidates)} {name}: probs max {single[-1][1][1]:.4f}", flush=True)
    single.sort(key=lambda item: (item[1][1], item[1][0]))  # lowest max error first
    table("one node in fp32, the 8 most helpful", [(name, [name], m) for name, m in single[:8]])
    greedy = [(f"the {k} most helpful in fp32", [name for name, _ in single[:k]]) for k in (1, 2, 4, 8)]
    table("the most helpful nodes in fp32 together", [(name, blocked, run(blocked)) for name, blocked in greedy])


if __name__ == "__main__":
    main()
