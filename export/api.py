"""``run_export`` and ``run_verify``: the library calls behind ``symnets export`` and ``symnets verify``.

Configs are frozen dataclasses whose fields map one to one onto the CLI options; the CLI only
builds one and prints the result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Optional

from symnets_deploy.atomic import exclusive
from symnets_deploy.enums import ExportFormat, Head, Precision, parse_choice
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.outputs import artifact_files, refuse_overwriting
from symnets_deploy.export import formats
from symnets_deploy.export.calibration import DEFAULT_MAX_IMAGES, collect_images
from symnets_deploy.export.compare import compare
from symnets_deploy.export.int8 import DEFAULT_CALIBRATION_SIZE
from symnets_deploy.export.onnx import DEFAULT_OPSET, MIN_OPSET, load_exported_fp32
from symnets_deploy.export.sources import CheckpointSource, OnnxSource
from symnets_deploy.export.tolerances import tolerance_for
from symnets_deploy.export.trt import DEFAULT_WORKSPACE_MIB, TrtProfile
from symnets_deploy.export.variants import artifact_name
from symnets_deploy.train.checkpoint import model_from_checkpoint, weights_sha256


@dataclass(frozen=True)
class ExportConfig:
    """One ``symnets export`` call, resolved.

    Attributes:
        checkpoint: ``RUN_DIR/last.pt`` (or the run folder); reference of the check: PyTorch.
        from_onnx: instead of a checkpoint, an fp32 ONNX exported by this package, converted to
            fp16 or int8; reference of the check: that ONNX in ONNX Runtime.
        format, precision, head: ``ExportFormat``, ``Precision``, ``Head`` values; head None keeps the card's.
        output: artifact path (default: ``model[.fp16|.int8].onnx|plan`` next to the checkpoint;
            ``<name>.<precision>.onnx`` in the current folder for ``from_onnx``).
        calibration_images: folder of real images for the check and the int8 calibration
            (default: the card's target domain).
        max_images: cap on the check's images.
        calibration_size: int8: images (a spread subset of the check's) that calibrate activation ranges.
        min_batch, opt_batch, max_batch: TensorRT profile (``--format trt`` only; default 1/8/32).
        opset: ONNX opset (>= 18).
        workspace_mib: TensorRT builder workspace limit.
        timing_cache: TensorRT timing cache file (default: per version and GPU under ~/.cache).
    """

    checkpoint: Optional[str] = None
    from_onnx: Optional[str] = None
    format: str = ExportFormat.onnx.value
    precision: str = Precision.fp32.value
    head: Optional[str] = None
    output: Optional[str] = None
    calibration_images: Optional[str] = None
    max_images: int = DEFAULT_MAX_IMAGES
    min_batch: Optional[int] = None
    opt_batch: Optional[int] = None
    max_batch: Optional[int] = None
    opset: int = DEFAULT_OPSET
    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    timing_cache: Optional[str] = None
    calibration_size: Optional[int] = None

    def __post_init__(self) -> None:
        fmt = parse_choice(ExportFormat, self.format, "format")
        precision = parse_choice(Precision, self.precision, "precision")
        if self.head is not None:
            parse_choice(Head, self.head, "head")
        if (self.checkpoint is None) == (self.from_onnx is None):
            raise UsageError("give exactly one of --checkpoint (a training run) and --from-onnx (an fp32 ONNX to convert)")
        if self.from_onnx is not None:
            if fmt is not ExportFormat.onnx or precision is Precision.fp32:
                raise UsageError("--from-onnx converts an fp32 ONNX into --precision fp16 or int8 (--format onnx)")
            if self.head is not None:
                raise UsageError("--head applies to --checkpoint only: an ONNX deploys the head it was exported with")
        if precision is Precision.int8 and fmt is ExportFormat.trt:
            raise UsageError("int8 is ONNX Runtime's CPU variant (uint8 activations); for TensorRT use --precision fp16")
        if self.calibration_size is not None:
            if precision is not Precision.int8:
                raise UsageError("--calibration-size applies to --precision int8 only")
            if self.calibration_size < 1:
                raise UsageError(f"--calibration-size must be >= 1, got {self.calibration_size}")
        if fmt is not ExportFormat.trt:
            given = [f"--{n.replace('_', '-')}" for n in ("min_batch", "opt_batch", "max_batch", "timing_cache") if getattr(self, n) is not None]
            if given:
                raise UsageError(f"{', '.join(given)} apply to --format trt only")
        else:
            self.profile()  # validates the batch sizes before any work
        if self.max_images < 1:
            raise UsageError(f"--max-images must be >= 1, got {self.max_images}")
        if self.opset < MIN_OPSET:
            raise UsageError(f"opset {self.opset} is not supported: the torch.export-based ONNX exporter emits opset {MIN_OPSET} or newer")

    def profile(self) -> TrtProfile:
        """The TensorRT profile, defaults filled in."""
        default = TrtProfile()
        return TrtProfile(
            self.min_batch if self.min_batch is not None else default.min,
            self.opt_batch if self.opt_batch is not None else default.opt,
            self.max_batch if self.max_batch is not None else default.max,
        )

    def default_output(self) -> Path:
        """``model.onnx``, ``model.fp16.onnx``, ``model.plan``... in the checkpoint's folder, or
        ``<name>.<precision>.onnx`` in the current folder for ``from_onnx`` (whose folder may be shared or read-only)."""
        if self.from_onnx is not None:
            return Path.cwd() / f"{Path(self.from_onnx).stem}.{self.precision}.onnx"
        ckpt = Path(self.checkpoint)
        folder = ckpt if ckpt.is_dir() else ckpt.parent
        return folder / artifact_name(ExportFormat(self.format), Precision(self.precision))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_export(config: ExportConfig, *, stage: Callable[[str], None] = lambda _text: None) -> formats.Produced:
    """Export a checkpoint (or convert an fp32 ONNX), check it against its reference on real images, and place it.

    Args:
        config: the resolved options.
        stage: called with a short message as each long step starts (the CLI logs them).

    Raises:
        MissingDependencyError: TensorRT or a CUDA GPU missing for ``--format trt`` (nothing written).
        UsageError: bad options, or no calibration images.
        ArtifactError: unreadable checkpoint or ONNX (no card, not fp32), or export/build failure.
        EquivalenceError: the check failed; ``<artifact>.verify.json`` says why, and no artifact
            is placed under the final name.
    """
    start = time.perf_counter()
    spec = formats.FORMATS[ExportFormat(config.format)]
    out = Path(config.output) if config.output else config.default_output()
    if out.suffix.lower() != spec.suffix:
        raise UsageError(f"{out}: a {config.format} artifact needs the suffix {spec.suffix}")
    if config.from_onnx is not None and out.resolve() == Path(config.from_onnx).resolve():
        raise UsageError(f"{out}: the output would replace the model it is converted from")
    source_files = artifact_files(config.from_onnx) if config.from_onnx is not None else [Path(config.checkpoint)]
    refuse_overwriting(out, [*source_files, *([config.calibration_images] if config.calibration_images else [])], "--output")
    env = spec.preflight(config)
    stage(f"reading {config.from_onnx or config.checkpoint}")
    source, card = _open_source(config)
    images = collect_images(card, Path(config.calibration_images) if config.calibration_images else None, max_images=config.max_images)
    stage(f"{len(images.paths)} check images from {images.source}" + (f" ({len(images.skipped)} unreadable, skipped)" if images.skipped else ""))
    job = formats.ExportJob(
        source=source, card=card, head=Head(config.head or card.head), precision=Precision(config.precision), out=out,
        images=images, opset=config.opset, profile=config.profile() if spec.format is ExportFormat.trt else None,
        workspace_mib=config.workspace_mib, timing_cache=Path(config.timing_cache) if config.timing_cache else None, env=env,
        calibration_size=config.calibration_size or DEFAULT_CALIBRATION_SIZE, stage=stage,
    )
    with exclusive(out, "exporting to"):  # a second export to the same file is refused, not interleaved
        done = spec.produce(job)
    return replace(done, seconds=time.perf_counter() - start)


def _open_source(config: ExportConfig):
    """``(source, card)`` of a checkpoint or of an fp32 ONNX."""
    if config.from_onnx is not None:
        graph, card = load_exported_fp32(Path(config.from_onnx))
        return OnnxSource(Path(config.from_onnx), graph), card
    model, card, _ = model_from_checkpoint(Path(config.checkpoint))
    return CheckpointSource(model), card


def _same_model(artifact_card, checkpoint_card) -> bool:
    a, b = artifact_card.to_dict(), checkpoint_card.to_dict()
    a.pop("head"), b.pop("head")
    return a == b


def run_verify(artifact: Path, checkpoint: Path, *, images: Optional[Path] = None, max_images: int = DEFAULT_MAX_IMAGES) -> formats.Produced:
    """Rerun the equivalence check of an artifact against its checkpoint; rewrite ``<artifact>.verify.json``.

    The reference is the checkpoint in PyTorch (fp32, eval), deploying the head the artifact's
    card names; thresholds are those of the artifact's precision.

    Raises:
        UsageError: unknown artifact type or no images.
        ArtifactError: the artifact is unreadable or was not exported from this checkpoint.
        MissingDependencyError: a plan without TensorRT or a GPU.
        EquivalenceError: the check failed (exit code 6).
    """
    artifact = Path(artifact)
    if not artifact.is_file():
        raise UsageError(f"{artifact}: artifact not found")
    spec = formats.format_for_artifact(artifact)
    opened = spec.open(artifact)
    model, card, _ = model_from_checkpoint(Path(checkpoint))
    if opened.weights is not None:  # recorded at export: the weights decide, not the card's metrics or dates
        if opened.weights != weights_sha256(model):
            raise ArtifactError(f"{artifact}: was exported from other weights than {checkpoint}'s (sha256 {opened.weights[:12]}...)")
    elif not _same_model(opened.card, card):
        raise ArtifactError(f"{artifact}: its model card differs from {checkpoint}'s: it was not exported from this checkpoint")
    calibration = collect_images(card, images, max_images=max_images)
    batches = calibration.batches(opened.batch, opened.min_batch)
    reference = CheckpointSource(model).reference(Head(opened.card.head), opened.card)
    report = compare(reference, [opened.candidate], batches, tolerance=tolerance_for(opened.precision))
    accuracy = formats.accuracy_of(report, calibration, card.class_names)
    path = formats.write_report(artifact, report, checked_file=artifact, fmt=spec.format, precision=opened.precision, head=opened.card.head, images=calibration, accuracy=accuracy)
    if not report:
        raise formats.failure(artifact, report, accuracy)
    return formats.Produced(artifact, report, path, (), accuracy=accuracy, images_source=calibration.source)
