"""The reference profile every exported artifact carries, from the artifact's own outputs.

Computed right after the variant is written, on the export's check images (the adaptation
target, evenly spread) and, where the run held source images out and they are on this machine,
on those labeled images, which calibrate the estimators that need labels. Each precision
variant is profiled through its own outputs, so an int8 model is compared with int8 behaviour.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from symnets_deploy.backends.base import Backend
from symnets_deploy.card import ONNX_PROFILE_KEY, ModelCard
from symnets_deploy.errors import ImageError, UsageError
from symnets_deploy.export.calibration import CalibrationImages, data_roots
from symnets_deploy.monitoring import Profile, build_profile
from symnets_deploy.onnx_metadata import set_metadata
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch

#: Images per inference call while profiling.
BATCH = 32


def _logits(backend: Backend, images: np.ndarray) -> np.ndarray:
    return np.concatenate([backend.infer(images[i : i + BATCH])["logits"] for i in range(0, len(images), BATCH)])


def held_out_images(card: ModelCard) -> Optional[tuple[np.ndarray, np.ndarray, str]]:
    """The run's held-out source images (``--source-val``), preprocessed, with their labels and folder.

    Returns:
        ``(float32 [N,3,S,S], int64 [N], source folder)``, or None when the run held nothing out or
        its source folder is not on this machine (the profile then uses no labels).
    """
    from symnets_deploy.train.data import scan_domain, split_source

    config = card.train_config
    fraction, source = float(config.get("source_val") or 0.0), card.source
    if fraction <= 0 or not source or not config.get("data_root"):
        return None
    root = next((r for r in data_roots(config["data_root"]) if (r / source).is_dir()), None)
    if root is None:
        return None
    try:
        domain = scan_domain(root, source)
    except UsageError:
        return None
    if tuple(domain.class_names) != tuple(card.class_names):
        return None
    _, held = split_source(domain, fraction, int(config.get("seed", 0)))
    cfg = PreprocessConfig.from_card(card)
    crops, labels = [], []
    for path, label in held.samples:
        try:
            crops.append(preprocess_image(path, cfg))
            labels.append(label)
        except ImageError:
            continue
    if not crops:
        return None
    return to_batch(crops), np.array(labels, dtype=np.int64), str(domain.root)


def reference_profile(backend: Backend, images: CalibrationImages, card: ModelCard) -> Profile:
    """The profile of ``backend``'s outputs on the check images (and the run's held-out source images)."""
    held = held_out_images(card)
    labeled_logits = labels = None
    labeled_source = ""
    if held is not None:
        labeled_logits, labels, labeled_source = _logits(backend, held[0]), held[1], held[2]
    return build_profile(
        _logits(backend, images.images), labeled_logits=labeled_logits, labels=labels, source=images.source, labeled_source=labeled_source,
    )


def write_profile(path: Path, profile: Profile) -> Path:
    """Put ``profile`` into the ONNX file at ``path`` (in place: ``path`` is the export's temp file)."""
    path = Path(path)
    path.write_bytes(set_metadata(path.read_bytes(), {ONNX_PROFILE_KEY: profile.to_json()}))
    return path
