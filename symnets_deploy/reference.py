"""Adding a reference profile to an artifact that has none, without torch (``symnets profile``).

The profile (``monitoring.Profile``) describes the model's own outputs on the images it was
adapted to; predict-time monitoring compares new images with it. ``symnets export`` writes one
into every artifact; this module gives one to an older file, or to a model exported elsewhere:

    from symnets_deploy.reference import profile_artifact

    profile = profile_artifact("model.onnx", "webcam/", output="model.profiled.onnx")
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

import numpy as np

from symnets_deploy.card import ONNX_PROFILE_KEY
from symnets_deploy.errors import UsageError
from symnets_deploy.evaluation import scan_labeled_folder
from symnets_deploy.inputs import scan_folder
from symnets_deploy.monitoring import DEFAULT_ESTIMATOR, Profile, build_profile
from symnets_deploy.onnx_metadata import read_metadata_file, set_metadata_file
from symnets_deploy.predictor import Predictor


def artifact_profile(path: str | Path) -> Optional[Profile]:
    """The reference profile an ``.onnx`` (metadata) or ``.plan`` (sidecar) carries, read without running it.

    Raises:
        ArtifactError: the file or its profile is unreadable.
    """
    from symnets_deploy.errors import ArtifactError

    path = Path(path)
    try:
        if path.suffix.lower() == ".plan":
            from symnets_deploy.sidecar import read_sidecar

            data = read_sidecar(path).reference_profile
            return Profile.from_dict(data) if data is not None else None
        text = read_metadata_file(path).get(ONNX_PROFILE_KEY)
        return Profile.from_json(text) if text is not None else None
    except ValueError as exc:
        raise ArtifactError(f"{path}: unreadable reference profile ({exc})") from None
    except OSError as exc:
        raise ArtifactError(f"{path}: cannot read ({exc.strerror})") from None


def predict_logits(predictor: Predictor, paths: list[Path]) -> tuple[np.ndarray, list[int], list[str]]:
    """Logits of every image that decodes.

    Returns:
        ``(logits [n,K] float32, index into paths of each row, one-line errors of the others)``.
    """
    batches: list[np.ndarray] = []
    kept, failed = [], []
    with predictor.observing(batches.append):
        for i, p in enumerate(predictor.iter_predict_paths(paths)):
            if p.ok:
                kept.append(i)
            else:
                failed.append(p.error)
    logits = np.concatenate(batches) if batches else np.zeros((0, predictor.card.num_classes), dtype=np.float32)
    return logits, kept, failed


def profile_artifact(
    model: str | Path, target_dir: str | Path, *, output: str | Path, labeled_val: Optional[str | Path] = None,
    estimator: str = DEFAULT_ESTIMATOR, batch_size: int = 16, threads: int = 0, stage: Callable[[str], None] = lambda _text: None,
) -> Profile:
    """Profile an ONNX artifact on its target images and write a copy of it carrying the profile.

    Args:
        model: an ``.onnx`` exported by this package (with or without a profile).
        target_dir: the images the model was adapted to (found recursively; labels not needed).
        output: the copy to write; never the model itself. Weights and card are unchanged, so
            the copy keeps the model's ``symnets.weights_sha256``.
        labeled_val: optional folder laid out ``<class>/<image>`` with the card's classes, held out
            from training: calibrates the estimators that need labels (temperature, ATC, DoC).
        estimator: a ``monitoring.ESTIMATORS`` name.
        batch_size, threads: as for ``Predictor.load``.
        stage: called with a short message as each step starts.

    Returns:
        The profile written.

    Raises:
        UsageError: not an ``.onnx``, output = model, a missing folder, no readable image.
        ArtifactError: not a model of this package.
        MissingDependencyError: onnxruntime is missing.
    """
    model, target_dir, output = Path(model), Path(target_dir), Path(output)
    if model.suffix.lower() != ".onnx":
        raise UsageError(f"{model}: symnets profile adds a profile to an .onnx file (an engine gets its profile when it is built from one)")
    if output.suffix.lower() != ".onnx":
        raise UsageError(f"{output}: the output must be an .onnx file")
    if not target_dir.is_dir():
        raise UsageError(f"{target_dir}: no such folder of target images")
    if output.exists() and output.resolve() == model.resolve():
        raise UsageError(f"{output}: is the model itself; give another --output (the model is never modified)")
    with Predictor.load(model, device="cpu", batch_size=batch_size, threads=threads) as predictor:
        paths = scan_folder(target_dir)
        if not paths:
            raise UsageError(f"{target_dir}: no images found")
        stage(f"running the model on {len(paths)} target images")
        logits, _, failed = predict_logits(predictor, paths)
        if not len(logits):
            raise UsageError(f"{target_dir}: no readable image ({len(failed)} failed, e.g. {failed[0]})")
        labeled_logits = labels = None
        if labeled_val is not None:
            items = scan_labeled_folder(labeled_val, predictor.class_names)
            stage(f"running the model on {len(items)} labeled held-out images")
            labeled_logits, kept, _ = predict_logits(predictor, [path for path, _ in items])
            labels = np.array([items[i][1] for i in kept], dtype=np.int64)
    profile = build_profile(
        logits, labeled_logits=labeled_logits, labels=labels, estimator=estimator, source=str(target_dir),
        labeled_source=str(labeled_val) if labeled_val is not None else "",
    )
    set_metadata_file(model, output, {ONNX_PROFILE_KEY: profile.to_json()})
    return profile
