"""The TensorRT engine sidecar: ``model.plan.json`` next to ``model.plan`` (DESIGN.md section 2).

A serialized engine runs only on the TensorRT version and GPU architecture that built it, and
says nothing about its classes or preprocessing. The sidecar records both, plus the sha256 of
the plan and of its source ONNX, so the runtime can refuse a mismatch with a clear message
before it deserialises anything. Torch-free: the runtime imports this module.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from symnets_deploy.atomic import atomic_write
from symnets_deploy.card import ModelCard
from symnets_deploy.errors import ArtifactError

#: Suffix appended to the plan's file name: ``model.plan`` -> ``model.plan.json``.
SIDECAR_SUFFIX = ".json"

_PROFILE_KEYS = ("min", "opt", "max")


@dataclass(frozen=True)
class EngineSidecar:
    """What a TensorRT plan needs around it to be run safely.

    Attributes:
        card: the model card as a plain dict (``ModelCard.to_dict()``).
        tensorrt_version: ``tensorrt.__version__`` of the builder, e.g. ``"10.3.0"``.
        gpu_name: name of the GPU the engine was built on.
        compute_capability: ``"major.minor"`` of that GPU, e.g. ``"9.0"``.
        profile: batch sizes of the optimisation profile, ``{"min": int, "opt": int, "max": int}``.
        precision: ``"fp32"`` or ``"fp16"`` (the precision of the source ONNX).
        onnx_sha256: hex sha256 of the ONNX the engine was built from.
        plan_sha256: hex sha256 of the serialized plan.
        package_version: symnets-deploy version that built it.
        created: ISO-8601 UTC timestamp.
        weights_sha256: sha256 of the checkpoint weights the engine was exported from (``verify``
            decides "same model" by it); ``None`` in sidecars written before it was recorded.
        reference_profile: the ``monitoring.Profile`` of the engine's own outputs on the reference
            images, as a plain dict; ``None`` when the engine has none.
    """

    card: dict
    tensorrt_version: str
    gpu_name: str
    compute_capability: str
    profile: dict
    precision: str
    onnx_sha256: str
    plan_sha256: str
    package_version: str
    created: str
    weights_sha256: Optional[str] = None
    reference_profile: Optional[dict] = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "EngineSidecar":
        """Build a sidecar from parsed JSON, ignoring unknown keys (written by a newer version).

        Raises:
            ArtifactError: not an object, a key is missing, a value has the wrong type, or the
                card or profile is invalid.
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"invalid engine sidecar: expected a JSON object, got {type(data).__name__}")
        names = [f.name for f in fields(cls)]
        optional = {"weights_sha256", "reference_profile"}
        missing = [n for n in names if n not in data and n not in optional]
        if missing:
            raise ArtifactError(f"invalid engine sidecar: missing keys {', '.join(missing)}")
        wrong = [n for n in names if n not in ("card", "profile", "reference_profile") and n in data and not isinstance(data[n], str) and not (n in optional and data[n] is None)]
        if wrong:
            raise ArtifactError(f"invalid engine sidecar: {', '.join(wrong)} must be strings")
        if not isinstance(data["card"], dict):
            raise ArtifactError("invalid engine sidecar: card must be a JSON object")
        ModelCard.from_dict(data["card"])  # raises ArtifactError when the card itself is invalid
        profile = data["profile"]
        if not isinstance(profile, dict) or any(type(profile.get(k)) is not int for k in _PROFILE_KEYS):
            raise ArtifactError(f"invalid engine sidecar: profile must hold integer min, opt and max, got {profile!r}")
        if not 1 <= profile["min"] <= profile["opt"] <= profile["max"]:
            raise ArtifactError(f"invalid engine sidecar: profile needs 1 <= min <= opt <= max, got {profile!r}")
        if data.get("reference_profile") is not None and not isinstance(data["reference_profile"], dict):
            raise ArtifactError("invalid engine sidecar: reference_profile must be a JSON object")
        return cls(**{n: data[n] for n in names if n in data})

    def model_card(self) -> ModelCard:
        """The card as a ``ModelCard``."""
        return ModelCard.from_dict(self.card)


def sidecar_path(plan: Path) -> Path:
    """``model.plan`` -> ``model.plan.json``."""
    plan = Path(plan)
    return plan.with_name(plan.name + SIDECAR_SUFFIX)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_sidecar(plan: Path, sidecar: EngineSidecar) -> Path:
    """Write ``<plan>.json`` atomically (temp file + rename).

    Args:
        plan: the engine file the sidecar describes.
        sidecar: its contents.

    Returns:
        The sidecar's path.
    """
    path = sidecar_path(plan)
    text = json.dumps(sidecar.to_dict(), indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_sidecar(plan: Path) -> EngineSidecar:
    """Read and validate ``<plan>.json``.

    Args:
        plan: the engine file (``model.plan``); its sidecar is ``model.plan.json``.

    Raises:
        ArtifactError: the sidecar is missing, not JSON, or incomplete; the message names the file.
    """
    path = sidecar_path(plan)
    if not path.is_file():
        raise ArtifactError(f"{path}: engine sidecar not found (it is written next to the plan by 'symnets export --format trt')")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: engine sidecar is not valid JSON ({exc})") from None
    try:
        return EngineSidecar.from_dict(data)
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def check_plan(plan: str | Path, *, tensorrt_version: Optional[str] = None, compute_capability: Optional[str] = None) -> EngineSidecar:
    """Read a plan's sidecar and refuse a plan this machine cannot run, or that is not the plan described.

    The one check of a plan, for ``predict`` and ``verify`` alike. It runs twice there: first
    without versions (sidecar and sha256 only, so a stray plan is exit 5 even where TensorRT is
    absent), then with the installed TensorRT and the GPU, before anything is deserialised.

    Args:
        plan: the ``.plan`` file; its sidecar is ``sidecar_path(plan)``.
        tensorrt_version: the installed ``tensorrt.__version__``; ``None`` skips this check.
        compute_capability: ``"major.minor"`` of the GPU that will run the plan; ``None`` skips it.

    Returns:
        The validated ``EngineSidecar``.

    Raises:
        ArtifactError: the sidecar is missing or invalid, the TensorRT version or the GPU's
            compute capability differs, or the plan's sha256 differs from the recorded one.
    """
    plan = Path(plan)
    sidecar = read_sidecar(plan)
    rebuild = "rebuild it here with 'symnets export --format trt'"
    if tensorrt_version is not None and str(tensorrt_version).strip() != sidecar.tensorrt_version.strip():
        raise ArtifactError(
            f"{plan}: built with TensorRT {sidecar.tensorrt_version}, but TensorRT {tensorrt_version} is installed "
            f"(engines are tied to the exact version); {rebuild}"
        )
    if compute_capability is not None and str(compute_capability).strip() != sidecar.compute_capability.strip():
        raise ArtifactError(
            f"{plan}: built for a GPU of compute capability {sidecar.compute_capability} ({sidecar.gpu_name}), "
            f"but this GPU has {compute_capability}; {rebuild}"
        )
    if not plan.is_file():
        raise ArtifactError(f"{plan}: engine file not found")
    actual = sha256_file(plan)
    if actual != sidecar.plan_sha256:
        raise ArtifactError(
            f"{plan}: sha256 {actual[:12]}... differs from the sidecar's {sidecar.plan_sha256[:12]}... "
            f"(the plan was replaced or corrupted); {rebuild}"
        )
    return sidecar
