"""One entry per artifact format: how it is produced and checked, and how it is opened for ``verify``.

The ultralytics table without the booleans: ``FORMATS[ExportFormat.onnx]`` and
``FORMATS[ExportFormat.trt]`` hold functions, so a new format is one new entry. Every producer
writes to a temp name, runs the equivalence check, writes ``<artifact>.verify.json`` and renames
the artifact into place only when the check passed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from symnets_deploy import __version__
from symnets_deploy.backends.ort import OrtBackend
from symnets_deploy.backends.trt import TrtBackend
from symnets_deploy.card import ONNX_PROFILE_KEY, ModelCard
from symnets_deploy.enums import ExportFormat, Head, Precision
from symnets_deploy.errors import EquivalenceError, UsageError
from symnets_deploy.export import trt
from symnets_deploy.export.calibration import CalibrationImages
from symnets_deploy.export.compare import EquivalenceReport, compare
from symnets_deploy.export.int8 import CALIBRATION_METHOD, DEFAULT_CALIBRATION_SIZE, calibration_subset
from symnets_deploy.export.onnx import onnx_precision, onnx_weights, read_onnx_metadata, write_variant
from symnets_deploy.export.profiling import reference_profile, write_profile
from symnets_deploy.export.sources import CheckpointSource, OnnxSource
from symnets_deploy.export.tolerances import tolerance_for
from symnets_deploy.gpu import CudaDevice, cuda_device, require_tensorrt
from symnets_deploy.sidecar import EngineSidecar, check_plan, sha256_file, sidecar_path, write_sidecar
from symnets_deploy.atomic import atomic_write, temp_path
from symnets_deploy.evaluation import summarize

#: Images per batch in checks against ONNX Runtime (TensorRT uses its profile's opt batch).
CHECK_BATCH = 16


@dataclass(frozen=True)
class ExportJob:
    """Everything a producer needs, resolved by ``api.run_export``."""

    source: CheckpointSource | OnnxSource
    card: ModelCard  # the source's card
    head: Head
    precision: Precision
    out: Path
    images: CalibrationImages
    opset: int
    profile: Optional[trt.TrtProfile] = None
    workspace_mib: int = trt.DEFAULT_WORKSPACE_MIB
    timing_cache: Optional[Path] = None
    env: Any = None  # what ``preflight`` returned
    calibration_size: int = DEFAULT_CALIBRATION_SIZE  # int8 only
    stage: Callable[[str], None] = lambda _text: None  # progress messages for long steps

    def calibration(self) -> Optional[np.ndarray]:
        """int8: the images its activation ranges are calibrated on (a spread subset of the check images)."""
        return calibration_subset(self.images.images, self.calibration_size) if self.precision is Precision.int8 else None

    def calibration_info(self) -> Optional[dict[str, Any]]:
        if self.precision is not Precision.int8:
            return None
        return {"method": CALIBRATION_METHOD, "images": len(self.calibration()), "source": self.images.source, "subset_of_check_images": True}


@dataclass(frozen=True)
class Produced:
    """A checked artifact, the files written with it, and the wall time of the whole export."""

    artifact: Path
    report: EquivalenceReport
    report_path: Path
    files: tuple[Path, ...]
    seconds: float = 0.0
    accuracy: Optional[dict[str, Any]] = None  # backend name -> {accuracy, correct, images} on labeled check images
    images_source: str = ""  # where the check images came from

    def accuracy_lines(self) -> list[str]:
        """``accuracy on the check images: torch 97.63% (288/295), onnxruntime 97.63% (288/295)``, when labeled."""
        if not self.accuracy:
            return []
        parts = [f"{name} {100 * a['accuracy']:.2f}% ({a['correct']}/{a['images']})" for name, a in self.accuracy.items()]
        return ["accuracy on the labeled check images: " + ", ".join(parts)]


def report_path(artifact: Path) -> Path:
    """``model.onnx`` -> ``model.onnx.verify.json``."""
    return artifact.with_name(artifact.name + ".verify.json")


def accuracy_of(report: EquivalenceReport, images: CalibrationImages, class_names) -> Optional[dict[str, Any]]:
    """Top-1 accuracy of the reference and of each candidate on labeled check images (None: unlabeled)."""
    if images.labels is None or not report.comparisons:
        return None
    labels = np.asarray(images.labels)

    def score(top1) -> dict[str, Any]:
        result = summarize(labels, top1, class_names)
        return {"accuracy": result.accuracy, "correct": result.correct, "images": result.images}

    first = report.comparisons[0]
    return {first.reference: score(first.reference_top1), **{c.candidate: score(c.candidate_top1) for c in report.comparisons}}


def write_report(
    artifact: Path, report: EquivalenceReport, *, checked_file: Path, fmt: ExportFormat, precision: Precision, head: str,
    images: CalibrationImages, accuracy: Optional[dict[str, Any]] = None, calibration: Optional[dict[str, Any]] = None,
    to: Optional[Path] = None,
) -> Path:
    """Write ``<artifact>.verify.json`` atomically, or plainly to ``to`` (a temp name the caller renames).

    ``checked_file`` holds the bytes that were checked; the report records their sha256, so a
    report and an artifact that do not belong together can be told apart.
    """
    data = {
        "artifact": artifact.name, "artifact_sha256": sha256_file(checked_file), "format": fmt.value,
        "precision": precision.value, "head": head, "images": images.to_dict(), **report.to_dict(),
        "accuracy": accuracy, "calibration": calibration,
        "package_version": __version__, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    text = json.dumps(data, indent=2) + "\n"
    if to is not None:
        to.write_text(text, encoding="utf-8")
        return to
    return atomic_write(report_path(artifact), lambda tmp: tmp.write_text(text, encoding="utf-8"))


def failure(artifact: Path, report: EquivalenceReport, accuracy: Optional[dict[str, Any]] = None, *, kept_previous: bool = False) -> EquivalenceError:
    """One line that says which bound failed (and both accuracies, when labeled), pointing at the report."""
    problems = []
    for c in report.comparisons:
        for name, diff in c.outputs.items():
            problems += [f"{c.candidate} vs {c.reference}: |{name} diff| {broken}" for broken in diff.broken()]
        if c.top1_agree < report.tolerance.top1:
            problems.append(f"{c.candidate} vs {c.reference}: top-1 agreement {100 * c.top1_agree:.2f}% < {100 * report.tolerance.top1:g}%")
    scores = [f"{name} {100 * a['accuracy']:.2f}%" for name, a in (accuracy or {}).items()]
    scored = f"; accuracy {', '.join(scores)}" if scores else ""
    where = artifact.with_name(artifact.name + ".rejected.verify.json") if kept_previous else report_path(artifact)
    kept = "; the existing artifact and its report are unchanged" if kept_previous else ""
    return EquivalenceError(
        f"{artifact}: equivalence check failed on {report.num_images} images ({'; '.join(problems) or 'outputs differ'}){scored}; see {where}{kept}"
    )


def _check_and_place(job: ExportJob, tmp: Path, fmt: ExportFormat, reference, candidate, batches, after_place: Optional[Callable[[], None]] = None) -> Produced:
    """Check ``tmp``; place it and its report together on a pass, only the report on a failure.

    The report is written first under a temp name; on a pass the artifact and then the report
    are renamed into place back to back (the report names the artifact's sha256). A failure
    never leaves its report beside an older artifact of the same name: the report goes to
    ``<artifact>.rejected.verify.json`` then, and the older pair stays as it was.
    """
    report = compare(reference, [candidate], batches, tolerance=tolerance_for(job.precision))
    accuracy = accuracy_of(report, job.images, job.card.class_names)
    final = report_path(job.out)
    staged = write_report(
        job.out, report, checked_file=tmp, fmt=fmt, precision=job.precision, head=job.head.value,
        images=job.images, accuracy=accuracy, calibration=job.calibration_info(), to=temp_path(final),
    )
    try:
        if not report:
            kept = job.out.exists()
            os.replace(staged, final.with_name(job.out.name + ".rejected.verify.json") if kept else final)
            raise failure(job.out, report, accuracy, kept_previous=kept)
        os.replace(tmp, job.out)
        os.replace(staged, final)
    finally:
        staged.unlink(missing_ok=True)
    if after_place is not None:
        after_place()
    return Produced(job.out, report, final, (), accuracy=accuracy, images_source=job.images.source)


# -- ONNX ------------------------------------------------------------------------------------
def produce_onnx(job: ExportJob) -> Produced:
    """Convert the source's fp32 graph to the job's precision, then check it against the source's reference."""
    tmp = temp_path(job.out)
    try:
        graph = job.source.fp32_graph(job.head, job.card.input_size, job.opset)
        calibration = job.calibration()
        how = f" (calibrating {CALIBRATION_METHOD} ranges on {len(calibration)} images)" if calibration is not None else ""
        job.stage(f"writing the {job.precision.value} ONNX{how}")
        write_variant(graph, job.card.replace(head=job.head.value), tmp, precision=job.precision, calibration=calibration, weights=job.source.weights())
        job.stage(f"profiling its outputs on {len(job.images.paths)} target images (the reference of predict-time monitoring)")
        with OrtBackend(tmp, device="cpu") as written:
            profile = reference_profile(written, job.images, job.card)
        write_profile(tmp, profile)
        reference = job.source.reference(job.head, job.card)
        candidate = OrtBackend(tmp, device="cpu")
        job.stage(f"checking it against {reference.name} on {len(job.images.paths)} images")
        return _check_and_place(job, tmp, ExportFormat.onnx, reference, candidate, job.images.batches(CHECK_BATCH))
    finally:
        tmp.unlink(missing_ok=True)


@dataclass(frozen=True)
class Opened:
    """An artifact opened for ``verify``: the candidate to check and what it says about itself."""

    candidate: Any  # a Backend or a Polygraphy runner
    card: ModelCard
    precision: Precision
    batch: int = CHECK_BATCH
    min_batch: int = 1
    weights: Optional[str] = None  # sha256 of the checkpoint weights it was exported from, when recorded


def open_onnx(path: Path) -> Opened:
    """An exported ONNX under ONNX Runtime (CPU)."""
    backend = OrtBackend(path)
    return Opened(backend, backend.card(), onnx_precision(path), weights=onnx_weights(path))


# -- TensorRT --------------------------------------------------------------------------------
def preflight_trt(_config=None, purpose: str = "building a TensorRT engine") -> tuple[str, CudaDevice]:
    """TensorRT and a CUDA GPU, checked before any work or file (exit code 4 otherwise)."""
    trt = require_tensorrt(purpose)
    return trt.__version__, cuda_device(purpose)


def produce_trt(job: ExportJob) -> Produced:
    """Checked ONNX first (``<name>.onnx``), then the engine, checked TensorRT vs ONNX Runtime."""
    version, device = job.env or preflight_trt()
    profile = job.profile or trt.TrtProfile()
    batches = job.images.batches(profile.opt, profile.min)
    if not batches:
        raise UsageError(f"the equivalence check needs at least --min-batch {profile.min} images, got {len(job.images.paths)}")
    onnx_path = job.out.with_suffix(".onnx")
    onnx_done = produce_onnx(replace(job, out=onnx_path))
    cache = job.timing_cache or trt.default_timing_cache(version, device)
    tmp = temp_path(job.out)
    try:
        job.stage(f"building the TensorRT engine (profile {profile.min}/{profile.opt}/{profile.max})")
        trt.build_engine(onnx_path, tmp, profile=profile, workspace_mib=job.workspace_mib, timing_cache=cache, precision=job.precision)
        sidecar = EngineSidecar(
            card=job.card.replace(head=job.head.value).to_dict(), tensorrt_version=version, gpu_name=device.name,
            compute_capability=device.compute_capability, profile=profile.to_dict(), precision=job.precision.value,
            onnx_sha256=sha256_file(onnx_path), plan_sha256=sha256_file(tmp), package_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"), weights_sha256=onnx_weights(onnx_path),
            # The engine computes its ONNX's function within the check's tolerance: it shares that file's profile.
            reference_profile=json.loads(read_onnx_metadata(onnx_path)[ONNX_PROFILE_KEY]),
        )
        done = _check_and_place(
            job, tmp, ExportFormat.trt, OrtBackend(onnx_path), trt.trt_runner(tmp), batches,
            after_place=lambda: write_sidecar(job.out, sidecar),
        )
    finally:
        tmp.unlink(missing_ok=True)
    return replace(done, files=(onnx_path, onnx_done.report_path, sidecar_path(job.out)))


def open_trt(path: Path) -> Opened:
    """A plan under ``TrtBackend``, as ``predict`` runs it, after checking its sidecar and this machine.

    The sidecar comes first (a stray plan is exit 5 even without TensorRT), then TensorRT and the
    GPU, named for what ``verify`` does rather than for building.
    """
    check_plan(path)
    version, device = preflight_trt(purpose="checking a TensorRT engine")
    sidecar = check_plan(path, tensorrt_version=version, compute_capability=device.compute_capability)
    profile = sidecar.profile
    return Opened(TrtBackend(path, device_index=device.index), sidecar.model_card(), Precision(sidecar.precision), profile["opt"], profile["min"], sidecar.weights_sha256)


@dataclass(frozen=True)
class FormatSpec:
    """An artifact format.

    Attributes:
        suffix: file suffix of the artifact.
        preflight: checks run before any work (missing library or device), returns ``ExportJob.env``.
        produce: export + equivalence check + placement.
        open: ``path -> Opened`` for ``verify``.
    """

    format: ExportFormat
    suffix: str
    preflight: Callable[[Any], Any]
    produce: Callable[[ExportJob], Produced]
    open: Callable[[Path], Opened]


FORMATS: dict[ExportFormat, FormatSpec] = {
    ExportFormat.onnx: FormatSpec(ExportFormat.onnx, ".onnx", lambda _config: None, produce_onnx, open_onnx),
    ExportFormat.trt: FormatSpec(ExportFormat.trt, ".plan", preflight_trt, produce_trt, open_trt),
}


def format_for_artifact(path: Path) -> FormatSpec:
    """The format of an artifact file, by suffix; unknown suffixes list the valid ones."""
    for spec in FORMATS.values():
        if Path(path).suffix.lower() == spec.suffix:
            return spec
    raise UsageError(f"{path}: unknown artifact type (valid suffixes: {', '.join(s.suffix for s in FORMATS.values())})")
