"""``symnets train --export onnx,fp16,int8``: checked artifacts right after training, in the same process.

The variants are the ones ``symnets export`` makes, under the same names in the run folder
(``model.onnx``, ``model.fp16.onnx``, ...), produced and checked by the same code; what is saved
is the work around it. The trained model is still in memory, and so is the whole target domain,
decoded by the runtime's preprocessing for the final evaluation; it becomes the check set.
Names are checked, and TensorRT's presence for ``trt`` variants, before the training starts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from symnets_deploy.atomic import exclusive
from symnets_deploy.enums import ExportFormat, Head, Precision
from symnets_deploy.errors import EquivalenceError, UsageError
from symnets_deploy.export import formats
from symnets_deploy.export.calibration import DEFAULT_MAX_IMAGES, CalibrationImages, spread
from symnets_deploy.export.onnx import DEFAULT_OPSET
from symnets_deploy.export.sources import CheckpointSource
from symnets_deploy.export.trt import TrtProfile

#: ``--export`` names: (format, precision) of each variant.
VARIANTS: dict[str, tuple[ExportFormat, Precision]] = {
    "onnx": (ExportFormat.onnx, Precision.fp32),
    "fp16": (ExportFormat.onnx, Precision.fp16),
    "int8": (ExportFormat.onnx, Precision.int8),
    "trt": (ExportFormat.trt, Precision.fp32),
    "trt-fp16": (ExportFormat.trt, Precision.fp16),
}


def artifact_name(fmt: ExportFormat, precision: Precision) -> str:
    """``model.onnx``, ``model.fp16.onnx``, ``model.int8.onnx``, ``model.plan``, ``model.fp16.plan``."""
    infix = "" if precision is Precision.fp32 else f".{precision.value}"
    return f"model{infix}{formats.FORMATS[fmt].suffix}"


def parse_variants(text: str) -> tuple[str, ...]:
    """The names in ``--export``, in order, checked (unknown, empty or repeated: exit 2)."""
    names = tuple(part.strip().lower() for part in text.split(","))
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise UsageError(f"--export: unknown variant(s) {', '.join(repr(n) for n in unknown)} (valid: {', '.join(VARIANTS)}, comma-separated)")
    if len(set(names)) != len(names):
        raise UsageError(f"--export: a variant is listed twice in {text!r}")
    return names


def preflight(names: Sequence[str]) -> dict[ExportFormat, object]:
    """What each format needs (TensorRT and a GPU for ``trt``), checked before any training (exit 4)."""
    return {fmt: formats.FORMATS[fmt].preflight(None) for fmt in dict.fromkeys(VARIANTS[n][0] for n in names)}


@dataclass(frozen=True)
class Outcome:
    """One variant's result: ``produced`` when its check passed, ``error`` when it did not."""

    name: str
    path: Path
    seconds: float
    produced: Optional[formats.Produced] = None
    error: Optional[EquivalenceError] = None


def check_images(images, labels, paths: Sequence[Path], source: Path, max_images: int = DEFAULT_MAX_IMAGES) -> CalibrationImages:
    """The decoded target domain (uint8 [N,3,S,S] tensor; labels None when unlabeled) as the export's check set, capped as ``symnets export`` caps it."""
    keep = spread(list(range(len(paths))), max_images)
    batch = images[keep].float().numpy()
    known = tuple(int(labels[i]) for i in keep) if labels is not None else None
    return CalibrationImages(str(source), tuple(paths[i] for i in keep), (), batch, known)


def export_trained(
    model, card, images: CalibrationImages, names: Sequence[str], folder: Path, env: dict[ExportFormat, object], *,
    stage: Callable[[str], None] = lambda _text: None,
) -> list[Outcome]:
    """Produce and check each variant from the model in memory; a failed check does not stop the next.

    Args:
        model: the trained SymNet, fp32, eval mode, CPU.
        card: its card (``last.pt``'s).
        images: the check set (``check_images``).
        names: ``--export`` names (``parse_variants``).
        folder: the run folder; artifacts get ``symnets export``'s default names there.
        env: ``preflight(names)``.

    Raises:
        ArtifactError, MissingDependencyError, UsageError: as ``symnets export``; an
            ``EquivalenceError`` is returned in its ``Outcome`` instead.
    """
    source, outcomes = CheckpointSource(model), []
    for name in names:
        fmt, precision = VARIANTS[name]
        out = Path(folder) / artifact_name(fmt, precision)
        job = formats.ExportJob(
            source=source, card=card, head=Head(card.head), precision=precision, out=out, images=images,
            opset=DEFAULT_OPSET, profile=TrtProfile() if fmt is ExportFormat.trt else None, env=env[fmt], stage=stage,
        )
        stage(f"exporting {name} to {out}")
        start = time.perf_counter()
        try:
            with exclusive(out, "exporting to"):
                done = formats.FORMATS[fmt].produce(job)
            outcomes.append(Outcome(name, out, time.perf_counter() - start, produced=done))
        except EquivalenceError as exc:
            outcomes.append(Outcome(name, out, time.perf_counter() - start, error=exc))
    return outcomes
