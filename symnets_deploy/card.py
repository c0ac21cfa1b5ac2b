"""The model card: the one description of a trained model that travels with every artifact.

Checkpoint, ONNX (``metadata_props['symnets.card']``) and engine sidecar carry the same card,
so preprocessing and class names are never guessed at prediction time.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Optional, Sequence

from symnets_deploy.enums import Head
from symnets_deploy.errors import ArtifactError
from symnets_deploy.preprocess import INTERPOLATIONS

#: Key under which the card's JSON is stored in ONNX ``metadata_props``.
ONNX_CARD_KEY = "symnets.card"
#: Key recording an ONNX file's precision (fp32, fp16, int8; absent: fp32): the card describes the
#: model, this the file.
ONNX_PRECISION_KEY = "symnets.precision"
#: Key recording the sha256 of the checkpoint weights an ONNX file was exported from (``verify``
#: decides "same model" by it; cards can differ in metrics for the same weights).
ONNX_WEIGHTS_KEY = "symnets.weights_sha256"
#: Key of the reference profile (``monitoring.Profile`` JSON) that predict-time monitoring compares
#: against; computed from this file's own outputs, so each precision variant has its own.
ONNX_PROFILE_KEY = "symnets.profile"

RGB = tuple[float, float, float]


def _package_version() -> str:
    from symnets_deploy import __version__

    return __version__


@dataclass(frozen=True)
class ModelCard:
    """What a deployed model predicts and how its input must be prepared.

    Attributes:
        class_names: labels in output index order (K entries).
        input_size: side of the square center crop fed to the network, pixels.
        resize_size: the shorter image side is resized to this before cropping, pixels.
        mean: per-channel RGB mean in 0..1 units; the graph computes (x / 255 - mean) / std.
        std: per-channel RGB std in 0..1 units.
        backbone: backbone registry name, e.g. ``"efficientnet_lite0"``.
        head: deployed classifier, a ``Head`` value.
        method: ``"symnets"`` or ``"source-only"``.
        source: source domain name; target: target domain name; dataset: dataset or preset name.
        interpolation: resize filter name, one of ``preprocess.INTERPOLATIONS`` (``"bilinear"``).
        train_config: the resolved training config (plain JSON types).
        metrics: final metrics, e.g. ``{"target_acc_ct": 0.93}``.
        package_version: symnets-deploy version that wrote the card.
        created: ISO-8601 UTC timestamp.
    """

    class_names: tuple[str, ...]
    input_size: int
    resize_size: int
    mean: RGB
    std: RGB
    backbone: str
    head: str = Head.ct.value
    method: str = "symnets"
    source: str = ""
    target: str = ""
    dataset: str = ""
    interpolation: str = "bilinear"
    train_config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    package_version: str = field(default_factory=_package_version)
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def __post_init__(self) -> None:
        # A card is read from files anyone can edit (ONNX metadata, sidecars, checkpoints), and
        # preprocessing, predict and info trust every value: refuse a bad one here, once.
        problems = _problems(self)
        if problems:
            raise ArtifactError("invalid model card: " + "; ".join(problems))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))

    @property
    def num_classes(self) -> int:
        """K, the number of classes."""
        return len(self.class_names)

    def graph_mismatches(self, input_hw: Sequence[Optional[int]], classes: Optional[int]) -> list[str]:
        """Where this card contradicts the graph it travels with (empty: they agree).

        Args:
            input_hw: the graph input's spatial dims, (height, width); None for a dynamic one.
            classes: the graph's output class dimension; None when dynamic.

        Returns:
            One phrase per contradiction, e.g. "the model outputs 3 classes but its card lists 5".
        """
        found = []
        if classes is not None and classes != self.num_classes:
            found.append(f"the model outputs {classes} classes but its card lists {self.num_classes}")
        if any(d is not None and d != self.input_size for d in input_hw):
            shown = "x".join("?" if d is None else str(d) for d in input_hw)
            found.append(f"the model takes {shown} images but its card says {self.input_size}x{self.input_size}")
        return found

    def replace(self, **changes: Any) -> "ModelCard":
        """A copy with some fields changed (e.g. the deployed head)."""
        return ModelCard.from_dict({**self.to_dict(), **changes})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples become lists)."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        return data

    def to_json(self) -> str:
        """Compact, key-sorted JSON: equal cards give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelCard":
        """Build a card, ignoring unknown keys (written by a newer version).

        Raises:
            ArtifactError: a required key is missing or a value is invalid.
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"invalid model card: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except (TypeError, ValueError) as exc:  # missing keys, or values of the wrong type
            raise ArtifactError(f"invalid model card: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> "ModelCard":
        """Parse a card from JSON text.

        Raises:
            ArtifactError: the text is not JSON or not a valid card.
        """
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"invalid model card: not JSON ({exc})") from exc
        return cls.from_dict(data)


#: Largest input or resize side a card may ask for: far above any classifier's input, and a
#: bigger value (a damaged or hostile card) would make each decoded image hundreds of MB.
MAX_SIDE = 4096


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problems(card: "ModelCard") -> list[str]:
    """Everything wrong with a card's values, checked before they are normalised (all at once)."""
    problems = []
    # Field types come from the annotations (strings, under ``from __future__ import annotations``).
    wrong_str = [f.name for f in fields(card) if f.type == "str" and not isinstance(getattr(card, f.name), str)]
    problems += [f"{name} must be a string" for name in wrong_str]
    problems += [f"{f.name} must be a JSON object" for f in fields(card) if f.type.startswith("dict[") and not isinstance(getattr(card, f.name), dict)]
    names = card.class_names
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n for n in names):
        problems.append("class_names must be a list of non-empty strings")
    elif not names:
        problems.append("class_names is empty")
    elif len(set(names)) != len(names):
        problems.append("class_names has duplicates")
    for name in ("mean", "std"):
        values = getattr(card, name)
        if not isinstance(values, (list, tuple)) or len(values) != 3 or not all(_is_number(v) for v in values):
            problems.append(f"{name} needs 3 values (numbers), got {values!r}")
        elif name == "mean" and not all(math.isfinite(v) for v in values):
            problems.append("mean must be finite")
        elif name == "std" and any(not math.isfinite(v) or v <= 0 for v in values):
            problems.append("std must be positive and finite")
    if not (_is_whole(card.input_size) and _is_whole(card.resize_size)):
        problems.append(f"input_size and resize_size must be whole numbers, got {card.input_size!r}, {card.resize_size!r}")
    elif not 0 < card.input_size <= card.resize_size <= MAX_SIDE:
        problems.append(f"need 0 < input_size <= resize_size <= {MAX_SIDE}, got {card.input_size}, {card.resize_size}")
    if "head" not in wrong_str and card.head not in {h.value for h in Head}:
        problems.append(f"unknown head {card.head!r} (valid: {', '.join(h.value for h in Head)})")
    if "interpolation" not in wrong_str and card.interpolation not in INTERPOLATIONS:
        problems.append(f"unknown interpolation {card.interpolation!r} (valid: {', '.join(INTERPOLATIONS)})")
    return problems
