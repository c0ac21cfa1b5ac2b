"""Real images for the equivalence check (and int8 calibration): a folder, or the card's target domain.

Random tensors exercise none of the activations real photos do, so the check always runs on
real images, preprocessed by the one runtime implementation. The selection is deterministic:
sorted paths, evenly spaced when capped, so every class folder is represented. When the images
are labeled (the target domain, or a folder laid out ``<class>/<image>`` with the card's class
names), their labels come along, so the report can give the accuracy of both models.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from symnets_deploy.card import ModelCard
from symnets_deploy.enums import TargetLabels
from symnets_deploy.errors import ImageError, UsageError
from symnets_deploy.evaluation import scan_labeled_folder
from symnets_deploy.inputs import scan_folder
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch

#: Folders searched (relative ones from the current folder) for a card's dataset by name.
DATA_SEARCH_PATH = ("data", "../data", "../shared/data")

#: Enough images that the top-1 bounds tolerate a few near-tie flips (fp16 99.5 %: two of 512)
#: and that a small target domain (Office webcam: 295 images) is checked whole.
DEFAULT_MAX_IMAGES = 512


@dataclass(frozen=True)
class CalibrationImages:
    """The check's inputs.

    Attributes:
        source: where they came from (a folder), for the report.
        paths: the images used, in order.
        skipped: unreadable files that were left out.
        images: float32 [N,3,H,W] RGB 0..255 (``preprocess.to_batch``).
        labels: class indices of the card, one per image, or None when the images are unlabeled.
    """

    source: str
    paths: tuple[Path, ...]
    skipped: tuple[str, ...]
    images: np.ndarray
    labels: Optional[tuple[int, ...]] = None

    def batches(self, size: int, min_size: int = 1) -> list[np.ndarray]:
        """Consecutive batches of ``size`` images; a last batch below ``min_size`` is dropped."""
        out = [self.images[i : i + size] for i in range(0, len(self.images), size)]
        return [b for b in out if len(b) >= min_size]

    def to_dict(self) -> dict:
        return {"source": self.source, "count": len(self.paths), "labeled": self.labels is not None, "skipped": list(self.skipped)}


def spread(items: list, limit: int) -> list:
    """At most ``limit`` items, evenly spaced over the sorted list (deterministic)."""
    if len(items) <= limit:
        return list(items)
    return [items[i * len(items) // limit] for i in range(limit)]


def data_roots(data_root: str) -> list[Path]:
    """Where to look for a card's dataset: its training path, then a folder of the same name under
    each directory of ``SYMNETS_DATA_PATH`` (``os.pathsep``-separated; default ``DATA_SEARCH_PATH``).

    A model trained on a GPU machine is usually exported or checked on another one, where the
    dataset lives under another root.
    """
    search = os.environ.get("SYMNETS_DATA_PATH")
    folders = search.split(os.pathsep) if search else DATA_SEARCH_PATH
    return [Path(data_root), *(Path(folder) / Path(data_root).name for folder in folders if folder)]


def _target_domain_images(card: ModelCard) -> tuple[str, list[tuple[Path, Optional[int]]]]:
    from symnets_deploy.train.data import scan_target

    data_root = card.train_config.get("data_root")
    hint = f"pass --calibration-images DIR with real images of the target domain{f' ({card.target!r})' if card.target else ''}"
    if not data_root or not card.target:
        raise UsageError(f"no calibration images: the model card names no target domain folder; {hint}")
    roots = data_roots(data_root)
    found = next((root for root in roots if (root / card.target).is_dir()), None)
    if found is None:
        tried = ", ".join(str(root / card.target) for root in roots)
        raise UsageError(f"no calibration images: the model's target domain is not on this machine (looked in {tried}); {hint}")
    ignore = card.train_config.get("target_labels") == TargetLabels.ignore.value
    domain = scan_target(found, card.target, card.class_names, ignore_labels=ignore)
    if not domain.labeled:
        return str(domain.root), [(path, None) for path, _ in domain.samples]
    return str(domain.root), list(domain.samples)


def _folder_images(folder: Path, card: ModelCard) -> list[tuple[Path, Optional[int]]]:
    """Labeled when laid out ``<class>/<image>`` with the card's class names, else unlabeled."""
    try:
        return [(path, label) for path, label in scan_labeled_folder(folder, card.class_names)]
    except UsageError:
        return [(path, None) for path in scan_folder(folder)]


def collect_images(card: ModelCard, folder: Optional[Path] = None, *, max_images: int = DEFAULT_MAX_IMAGES) -> CalibrationImages:
    """Load and preprocess the check's images.

    Args:
        card: the model's card (preprocessing; target domain from ``train_config['data_root']``).
        folder: images to use instead of the target domain (searched recursively).
        max_images: cap on the number of images (evenly spread over the sorted list).

    Raises:
        UsageError: ``max_images`` < 1, the folder is missing, or no readable image was found.
    """
    if max_images < 1:
        raise UsageError(f"--max-images must be >= 1, got {max_images}")
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UsageError(f"{folder}: calibration image folder not found")
        source, items = str(folder), _folder_images(folder, card)
    else:
        source, items = _target_domain_images(card)
    cfg = PreprocessConfig.from_card(card)
    crops, used, labels, skipped = [], [], [], []
    for path, label in spread(items, max_images):
        try:
            crops.append(preprocess_image(path, cfg))
        except ImageError as exc:
            skipped.append(str(exc))
            continue
        used.append(path)
        labels.append(label)
    if not crops:
        detail = f" ({len(skipped)} unreadable, e.g. {skipped[0]})" if skipped else ""
        raise UsageError(f"{source}: no readable images for the equivalence check{detail}")
    known = tuple(labels) if all(label is not None for label in labels) else None
    return CalibrationImages(source, tuple(used), tuple(skipped), to_batch(crops), known)
