"""Which int8 calibration to ship: every ONNX Runtime calibration method x calibration-set size.

For each setting, quantizes the fp32 ONNX exactly as ``symnets export --precision int8`` does
(``export.int8.quantize_int8``) and checks it against the fp32 ONNX with the export's own
``compare`` on the target-domain images (Polygraphy's statistics over all images), plus
accuracy on their labels. Prints one Markdown table.

    python bench/int8_calibration.py                      # the GPU-trained fixture on webcam
    python bench/int8_calibration.py --onnx model.onnx --images DATA/webcam --sizes 32,128
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx

from symnets_deploy.backends.ort import OrtBackend
from symnets_deploy.export.calibration import collect_images
from symnets_deploy.export.compare import compare
from symnets_deploy.export.int8 import calibration_subset, quantize_int8
from symnets_deploy.export.onnx import load_exported_fp32
from symnets_deploy.export.tolerances import TOLERANCES

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--onnx", type=Path, default=SHARED / "fixtures" / "a2w_lite0_h200.onnx", help="an fp32 ONNX exported by symnets")
    parser.add_argument("--images", type=Path, default=SHARED / "data" / "office_caltech10" / "webcam", help="labeled target images <class>/<image>")
    parser.add_argument("--methods", default="MinMax,Entropy,Percentile,Distribution")
    parser.add_argument("--sizes", default="32,128", help="calibration images (a spread subset of the check images)")
    parser.add_argument("--max-images", type=int, default=512)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")

    graph, card = load_exported_fp32(args.onnx)
    images = collect_images(card, args.images, max_images=args.max_images)
    labels = np.asarray(images.labels) if images.labels is not None else None
    work = Path(tempfile.mkdtemp(prefix="int8_calibration_"))
    rows = []
    for method in args.methods.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            calibration = calibration_subset(images.images, size)
            start = time.perf_counter()
            quantized = quantize_int8(graph, calibration, method=method)
            seconds = time.perf_counter() - start
            path = work / f"{method}_{size}.onnx"
            onnx.save(quantized, str(path))
            report = compare(OrtBackend(args.onnx, device="cpu"), [OrtBackend(path, device="cpu")], images.batches(32), tolerance=TOLERANCES["int8"])
            (cmp,) = report.comparisons
            probs = cmp.outputs["probs"]
            accuracy = f"{100 * np.mean(cmp.candidate_top1 == labels):.2f}" if labels is not None else "-"
            rows.append((method, len(calibration), seconds, cmp.top1_agree, probs.stats["p99"], probs.max_abs, accuracy, report.passed))
            print(f"  {method} {len(calibration)}: {seconds:.1f} s", flush=True)
    fp32 = f"{100 * np.mean(cmp.reference_top1 == labels):.2f} %" if labels is not None else "unlabeled"
    print(f"\n{args.onnx.name} vs its int8 variants on {len(images.paths)} images of {args.images} (fp32 accuracy {fp32})")
    print("| method | calibration images | quantize s | top-1 agreement | probs p99 | probs max | int8 accuracy % | gate |")
    print("|---|---|---|---|---|---|---|---|")
    for method, size, seconds, agree, p99, worst, accuracy, passed in rows:
        print(f"| {method} | {size} | {seconds:.1f} | {100 * agree:.2f} % | {p99:.4f} | {worst:.3f} | {accuracy} | {'pass' if passed else 'FAIL'} |")


if __name__ == "__main__":
    main()
