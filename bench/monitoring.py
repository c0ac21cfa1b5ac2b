"""Which accuracy estimator and drift rule to ship: measured on natural domains and corrupted copies of a target.

Runs the GPU-trained A->W model (``../shared/fixtures/a2w_lite0_h200.onnx``, or --model) over the adaptation
target (the reference: the profile is built from it), the other Office domains, and corrupted copies of the
target (blur, noise, JPEG, brightness, contrast, three severities each), and prints per folder: true accuracy
(from the class folders: used for this table only), each estimator (average confidence with and without
temperature, ATC, DoC) and the drift verdict of ``symnets_deploy.monitoring``. The calibrated estimators need
labeled held-out images (--labeled-val, default: the source domain; the fixture trained on all of it, so its
calibration is optimistic: a run of this version holds source images out for exactly this).

    python bench/monitoring.py                      # about 2 min on 2 cores; corrupted copies cached under /tmp
    python bench/monitoring.py --json docs/monitoring.json
"""

from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from symnets_deploy import monitoring as M
from symnets_deploy.backends.ort import OrtBackend
from symnets_deploy.evaluation import scan_labeled_folder
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch

SHARED = Path(__file__).resolve().parents[2] / "shared"
#: name -> (function of (image, level), three levels from mild to severe)
CORRUPTIONS = {
    "blur": (lambda im, r: im.filter(ImageFilter.GaussianBlur(r)), (1.0, 2.0, 4.0)),
    "noise": (lambda im, s: _noise(im, s), (10.0, 25.0, 50.0)),
    "jpeg": (lambda im, q: _jpeg(im, int(q)), (20, 10, 5)),
    "brightness": (lambda im, f: ImageEnhance.Brightness(im).enhance(f), (0.6, 0.4, 0.25)),
    "contrast": (lambda im, f: ImageEnhance.Contrast(im).enhance(f), (0.6, 0.4, 0.25)),
}


def _noise(image: Image.Image, sigma: float) -> Image.Image:
    arr = np.asarray(image, dtype=np.float32)
    rng = np.random.default_rng(int(sigma))  # fixed per severity: the copy is the same every time
    return Image.fromarray(np.clip(arr + rng.normal(0, sigma, arr.shape), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def corrupted_copy(target: Path, out: Path, name: str, level: float) -> Path:
    """``out/<name>-<level>/<class>/<image>``: every target image corrupted (made once, then reused)."""
    folder = out / f"{name}-{level:g}"
    if folder.is_dir():
        return folder
    fn = CORRUPTIONS[name][0]
    tmp = out / f".{folder.name}.tmp"
    for path in sorted(target.rglob("*.*")):
        dest = tmp / path.relative_to(target).with_suffix(".png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fn(Image.open(path).convert("RGB"), level).save(dest)
    tmp.rename(folder)
    return folder


def logits_of(backend: OrtBackend, folder: Path, cfg: PreprocessConfig, class_names, batch: int = 32, cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Logits [N,K] and labels [N] of every image of a labeled folder (kept in ``cache`` for the next run)."""
    stored = cache / f"{backend.path.stem}-{folder.name}.npz" if cache is not None else None
    if stored is not None and stored.is_file():
        with np.load(stored) as f:
            return f["logits"], f["labels"]
    items = scan_labeled_folder(folder, class_names)
    out = []
    for start in range(0, len(items), batch):
        crops = [preprocess_image(path, cfg) for path, _ in items[start : start + batch]]
        out.append(backend.infer(to_batch(crops))["logits"])
    logits, labels = np.concatenate(out), np.array([label for _, label in items])
    if stored is not None:
        np.savez(stored, logits=logits, labels=labels)
    return logits, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHARED / "fixtures" / "a2w_lite0_h200.onnx")
    parser.add_argument("--data-root", type=Path, default=SHARED / "data" / "office_caltech10")
    parser.add_argument("--target", default="webcam")
    parser.add_argument("--labeled-val", default="amazon", help="Domain under --data-root whose labels calibrate T, ATC and DoC.")
    parser.add_argument("--natural", default="amazon,dslr", help="Other domains to check.")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/symnets-monitoring"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    clock = time.perf_counter()
    backend = OrtBackend(args.model).activate()
    card = backend.card()
    cfg = PreprocessConfig.from_card(card)
    target = args.data_root / args.target
    args.cache.mkdir(parents=True, exist_ok=True)
    ref_logits, ref_labels = logits_of(backend, target, cfg, card.class_names, cache=args.cache)
    val_logits, val_labels = logits_of(backend, args.data_root / args.labeled_val, cfg, card.class_names, cache=args.cache)
    profiles = {
        name: M.build_profile(ref_logits, labeled_logits=val_logits, labels=val_labels, estimator=name, source=str(target), labeled_source=args.labeled_val)
        for name in M.ESTIMATORS
    }
    folders = [("reference: " + args.target, target)] + [(d, args.data_root / d) for d in args.natural.split(",") if d]
    folders += [(f"{name} {level:g}", corrupted_copy(target, args.cache, name, level)) for name, (_, levels) in CORRUPTIONS.items() for level in levels]
    rows = []
    ref_acc = float((ref_logits.argmax(1) == ref_labels).mean())
    for name, folder in folders:
        logits, labels = (ref_logits, ref_labels) if folder == target else logits_of(backend, folder, cfg, card.class_names, cache=args.cache)
        row = {"folder": name, "images": len(labels), "true": float((logits.argmax(1) == labels).mean())}
        for estimator, profile in profiles.items():
            stats = M.RunningStats(profile)
            stats.update(logits)
            summary = stats.summary()
            row[estimator] = summary["estimated_accuracy"]
            if estimator == M.DEFAULT_ESTIMATOR:
                row["drift"], row["reasons"] = summary["drift"], summary["reasons"]
                row["low_conf"] = summary["low_confidence_share"]
                row["shift"] = summary["confidence_shift"]
        row["should_flag"] = row["true"] <= ref_acc - 0.08
        rows.append(row)
    print(f"\nmodel {args.model.name}; reference {args.target} (true accuracy {100 * ref_acc:.2f} %, used for this table only); "
          f"calibration on {args.labeled_val} ({len(val_labels)} labeled images); T = {profiles['confidence-t'].temperature:.3f}, "
          f"ATC threshold = {profiles['atc'].atc_threshold:.4f}; default estimator: {M.DEFAULT_ESTIMATOR}\n")
    head = ["folder", "images", "true acc", *M.ESTIMATORS, "low-conf share", "KS shift", f"drift ({M.DEFAULT_ESTIMATOR})", "should flag"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        cells = [r["folder"], str(r["images"]), f"{100 * r['true']:.1f}", *(f"{100 * r[e]:.1f}" for e in M.ESTIMATORS),
                 f"{100 * r['low_conf']:.1f} %", f"{r['shift']:.3f}", "yes" if r["drift"] else "no", "yes" if r["should_flag"] else "no"]
        print("| " + " | ".join(cells) + " |")
    print("\nmean absolute error (points):")
    natural = [r for r in rows[1 : 1 + len([d for d in args.natural.split(",") if d])]]
    corrupt = rows[1 + len(natural):]
    for e in M.ESTIMATORS:
        mae = lambda rs: np.mean([abs(r[e] - r["true"]) for r in rs]) * 100 if rs else float("nan")  # noqa: E731
        worst = lambda rs: max([abs(r[e] - r["true"]) for r in rs], default=float("nan")) * 100  # noqa: E731
        print(f"  {e:13s} natural {mae(natural):5.2f} (worst {worst(natural):5.2f}) | corruptions {mae(corrupt):5.2f} (worst {worst(corrupt):5.2f})")
    missed = [r["folder"] for r in rows if r["should_flag"] and not r["drift"]]
    false = [r["folder"] for r in rows if not r["should_flag"] and r["drift"]]
    print(f"drift: missed {missed or 'none'}; flagged without an 8-point drop: {false or 'none'} | {time.perf_counter() - clock:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
