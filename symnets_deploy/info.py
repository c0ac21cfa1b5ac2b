"""What a model file is, and what this machine can run it with (``symnets info``).

A deployed file answers "which classes, which preprocessing, trained how, checked how" from its
card; the environment is the first thing a bug report needs. Both come back as plain dicts, so
the CLI prints them as aligned lines or as JSON. Torch-free: ``.pt`` checkpoints are described
by ``symnets_deploy.train.checkpoint``, and torch's own facts are added by the CLI.
"""

from __future__ import annotations

import importlib
import platform
import sys
from pathlib import Path
from typing import Any, Optional

from symnets_deploy._optional import is_available
from symnets_deploy.card import ONNX_WEIGHTS_KEY, ModelCard
from symnets_deploy.errors import SymnetsError, UsageError
from symnets_deploy.monitoring import Profile
from symnets_deploy.run_files import LABELED


def card_facts(card: ModelCard) -> dict[str, Any]:
    """The card's facts a user asks about first, in reading order."""
    metrics = {k: v for k, v in card.metrics.items() if k.startswith("target_acc") and isinstance(v, (int, float))}
    scores = card.metrics.get("label_free")
    scores = scores if isinstance(scores, dict) else None  # metrics are free-form JSON from the file
    return {
        "classes": list(card.class_names),
        "num_classes": card.num_classes,
        "input": f"{card.input_size}x{card.input_size} RGB center crop after resizing the shorter side to {card.resize_size} ({card.interpolation})",
        "normalisation": {"mean": list(card.mean), "std": list(card.std)},
        "backbone": card.backbone,
        "method": card.method,
        "head": card.head,
        "adaptation": f"{card.source or '?'} -> {card.target or '?'}" + (f" ({card.dataset})" if card.dataset else ""),
        "target_labels": _target_labels(card.metrics),
        # measured on the target's class folders at the end of training, evaluation only (target_labels above says so)
        "target_accuracy_percent": {k.removeprefix("target_acc_"): round(100 * v, 2) for k, v in metrics.items()} or None,
        "label_free": {k: _rounded(scores.get(k)) for k in (*LABEL_FREE_SHOWN, "source_val_images", "target_images") if k in scores} if scores else None,
        "warnings": card.metrics.get("warnings") or None,
        "package_version": card.package_version,
        "created": card.created,
    }


#: Label-free scores ``symnets info`` shows (``class_shares`` is summarised by its smallest share).
LABEL_FREE_SHOWN = ("source_val_acc_ct", "source_val_acc_cs", "target_mean_confidence", "target_entropy", "im_diversity",
                    "smallest_class_share", "cs_ct_agreement", "v_measure")


def _target_labels(metrics: dict[str, Any]) -> str | None:
    """What the card's numbers rest on; None for a card written before label-free scores."""
    labels = metrics.get("target_labels")
    if labels is None:
        return None
    return "from class folders, used for evaluation only" if labels == LABELED else "none (every number label-free)"


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def profile_facts(profile: Optional[Profile]) -> Any:
    """What predict-time monitoring compares with, or how to add it."""
    if profile is None:
        return "none: no accuracy estimate or drift check at predict time (add one: symnets profile MODEL TARGET_DIR --output FILE)"
    labeled = profile.labeled
    return {
        "images": profile.images, "source": profile.source, "estimator": profile.estimator,
        "estimated_accuracy": round(100 * profile.estimated_accuracy, 2), "mean_confidence": round(profile.mean_confidence, 4),
        "low_confidence_share": round(profile.low_confidence_share, 4), "temperature": round(profile.temperature, 4),
        "calibrated_on": f"{labeled['images']} labeled held-out images of {labeled['source']}" if labeled else "none (no labeled held-out images)",
    }


def file_facts(path: Path) -> dict[str, Any]:
    """Name, size and sha256: what tells two copies of a model file apart."""
    from symnets_deploy.sidecar import sha256_file

    return {"file": str(path), "size_mib": round(path.stat().st_size / 2**20, 2), "sha256": sha256_file(path)}


def describe_file(path: str | Path) -> dict[str, Any]:
    """Format, precision, card facts and checksums of an ``.onnx`` or ``.plan`` file.

    For an ``.onnx``, a ``warning`` fact says where the card contradicts the graph (class count,
    input size); a ``.plan``'s graph cannot be read without TensorRT, so it is not compared.

    Raises:
        UsageError: the file is missing or of another kind (``.pt`` goes to ``train.checkpoint``).
        ArtifactError: not a model of this package (no card, bad sidecar).
        MissingDependencyError: an ``.onnx`` without onnxruntime.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    facts: dict[str, Any] = {}
    if suffix == ".onnx":
        from symnets_deploy.backends.ort import OrtBackend

        with OrtBackend(path, device="cpu") as backend:  # a malformed file is refused before it is hashed
            facts.update(file_facts(path))
            meta = backend.session.get_modelmeta().custom_metadata_map
            facts.update(format="onnx", precision=backend.precision(), weights_sha256=meta.get(ONNX_WEIGHTS_KEY))
            card = backend.card()
            mismatches = card.graph_mismatches(backend.input_spec().shape[2:], backend.output_classes())
            if mismatches:  # shown, not refused: info is how a user finds out what is wrong with a file
                facts["warning"] = f"the card disagrees with the graph: {'; '.join(mismatches)} (predict and evaluate refuse this file)"
            facts.update(card_facts(card))
            facts["reference_profile"] = profile_facts(backend.reference_profile())
        return facts
    if suffix == ".plan":
        from symnets_deploy.sidecar import read_sidecar

        sidecar = read_sidecar(path)
        facts.update(file_facts(path))
        facts.update(format="tensorrt plan", precision=sidecar.precision, weights_sha256=sidecar.weights_sha256)
        facts.update(card_facts(sidecar.model_card()))
        facts["reference_profile"] = profile_facts(Profile.from_dict(sidecar.reference_profile) if sidecar.reference_profile else None)
        facts["engine"] = {
            "tensorrt_version": sidecar.tensorrt_version, "built_on": f"{sidecar.gpu_name} (compute capability {sidecar.compute_capability})",
            "batch_profile": sidecar.profile, "plan_matches_sidecar": facts["sha256"] == sidecar.plan_sha256,
            "onnx_sha256": sidecar.onnx_sha256, "built_by": sidecar.package_version, "created": sidecar.created,
        }
        return facts
    raise UsageError(f"{path}: not a model file symnets knows (.onnx, .plan, or a checkpoint .pt / run folder)")


def _version(module: str) -> str | None:
    if not is_available(module):
        return None
    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception as exc:  # noqa: BLE001 - a broken install is a fact to report, not a crash
        return f"present but not importable ({type(exc).__name__}: {str(exc).splitlines()[0][:80] if str(exc) else ''})"


def environment() -> dict[str, Any]:
    """Package, Python, and every runtime this package can use, with versions (None: not installed)."""
    from symnets_deploy import __version__
    from symnets_deploy.host import usable_cpus

    facts: dict[str, Any] = {
        "symnets-deploy": __version__, "python": sys.version.split()[0], "platform": platform.platform(),
        "cpus": usable_cpus(), "numpy": _version("numpy"), "pillow": _version("PIL"),
        "onnxruntime": _version("onnxruntime"), "tensorrt": _version("tensorrt"), "ray": _version("ray"),
        "report extra (matplotlib, scikit-learn)": {"matplotlib": _version("matplotlib"), "scikit-learn": _version("sklearn")},
    }
    if facts["onnxruntime"] and not facts["onnxruntime"].startswith("present"):
        import onnxruntime

        facts["onnxruntime_providers"] = list(onnxruntime.get_available_providers())
    if is_available("cuda.bindings.runtime") or is_available("cuda.cudart"):
        from symnets_deploy.gpu import cuda_device

        try:
            device = cuda_device("listing GPUs")
            facts["cuda_device_0"] = f"{device.name} (compute capability {device.compute_capability})"
        except SymnetsError as exc:
            facts["cuda_device_0"] = str(exc).split(";")[0]
    return facts


def format_facts(facts: dict[str, Any], indent: int = 0) -> list[str]:
    """Aligned ``key: value`` lines; nested dicts are indented below their key."""
    width = max((len(k) for k in facts), default=0)
    lines = []
    for key, value in facts.items():
        if isinstance(value, dict) and value:
            lines.append(" " * indent + f"{key}:")
            lines.extend(format_facts(value, indent + 2))
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        lines.append(" " * indent + f"{key + ':':<{width + 1}} {'-' if value is None else value}")
    return lines
