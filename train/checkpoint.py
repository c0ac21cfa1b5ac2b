"""Checkpoints (DESIGN.md section 2): plain types and tensors, atomic writes, weights_only loads."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch

from symnets_deploy.atomic import atomic_write
from symnets_deploy.card import ModelCard
from symnets_deploy.enums import Method
from symnets_deploy.errors import ArtifactError
from symnets_deploy.train.backbones import create_backbone, get_backbone
from symnets_deploy.train.data import train_resize
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.model import SymNet

CHECKPOINT_FORMAT = "symnets-checkpoint/1"


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write a checkpoint atomically (temp file + rename); a full disk is an ``OSError`` naming its cause."""
    def write(tmp: Path) -> None:
        with _Sink(tmp) as sink:
            try:
                torch.save({"format": CHECKPOINT_FORMAT, **payload}, sink)
            except RuntimeError:
                if sink.error is not None:  # torch's zip writer turns some write errors into a RuntimeError about positions
                    raise sink.error from None
                raise

    atomic_write(path, write)


class _Sink:
    """An unbuffered file for ``torch.save`` that remembers the first write error (full disk, quota, I/O)."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.error: OSError | None = None

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as exc:
            self.error = self.error or exc
            raise
        return len(view)

    def flush(self) -> None:
        pass

    def __enter__(self) -> "_Sink":
        return self

    def __exit__(self, *exc) -> None:
        os.close(self.fd)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint with ``weights_only=True`` (no pickle execution).

    Raises:
        ArtifactError: missing, unreadable or not a symnets checkpoint.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise ArtifactError(f"{path}: checkpoint not found")
    if path.stat().st_size == 0:
        raise ArtifactError(f"{path}: empty file (0 bytes), not a checkpoint; an interrupted copy?")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # torch's own message goes on to suggest weights_only=False, i.e. running the file's code.
        raise ArtifactError(
            f"{path}: refused: it holds Python objects beyond tensors and plain values, and loading them could run code "
            "(symnets checkpoints never do; was it written by another tool or altered?)"
        ) from None
    except Exception as exc:  # torch raises zip, EOF and runtime errors for damaged files
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ArtifactError(f"{path}: not a readable checkpoint ({type(exc).__name__}{': ' + first if first else ''})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ArtifactError(f"{path}: not a symnets checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return ckpt


def weights_sha256(model: torch.nn.Module) -> str:
    """sha256 over every parameter and buffer (name, dtype, shape, bytes), in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{value.dtype}|{tuple(value.shape)}|".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()


def build_model(config: TrainConfig, num_classes: int, *, weights: Any = "config") -> SymNet:
    """The network a config describes; ``weights=None`` skips pretrained loading (for restores)."""
    spec = get_backbone(config.backbone)
    backbone = create_backbone(config.backbone, config.weights if weights == "config" else weights, config.image_size)
    return SymNet(backbone, spec.feat_dim, num_classes, spec.mean, spec.std, symmetric=config.method == Method.symnets)


def checkpoint_card(ckpt: dict[str, Any], path: Path) -> ModelCard:
    """The checkpoint's model card, validated; an invalid one is an ``ArtifactError`` naming the file."""
    try:
        return ModelCard.from_dict(ckpt["card"])
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def model_from_checkpoint(path: Path) -> tuple[SymNet, ModelCard, TrainConfig]:
    """Rebuild the trained network (eval mode, CPU) with its card and config.

    Raises:
        ArtifactError: the checkpoint is invalid or its weights do not fit its config.
    """
    ckpt = load_checkpoint(path)
    card = checkpoint_card(ckpt, path)
    config = TrainConfig.from_saved(ckpt["config"])
    model = build_model(config, card.num_classes, weights=None)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not match the model ({str(exc).splitlines()[0]})") from None
    return model.eval(), card, config


def describe_checkpoint(path: Path) -> dict[str, Any]:
    """``symnets info`` facts of a checkpoint (or run folder): the card's, plus how far the run got."""
    from symnets_deploy.info import card_facts, file_facts

    path = Path(path) / "last.pt" if Path(path).is_dir() else Path(path)
    ckpt = load_checkpoint(path)
    config = ckpt.get("config", {})
    facts = {**file_facts(path), "format": "checkpoint"}
    facts.update(card_facts(checkpoint_card(ckpt, path)))
    facts["run"] = {
        "run_id": ckpt.get("run_id"), "iteration": f"{int(ckpt.get('iteration', 0))} of {config.get('iterations', '?')}",
        "batch_size": config.get("batch_size"), "seed": config.get("seed"), "data_root": config.get("data_root"),
    }
    return facts


def make_card(config: TrainConfig, class_names: tuple[str, ...], metrics: dict[str, Any] | None = None) -> ModelCard:
    """The card every artifact of this run carries, built from the backbone spec (one place)."""
    spec = get_backbone(config.backbone)
    return ModelCard(
        class_names=class_names, input_size=config.image_size, resize_size=train_resize(config.image_size),
        mean=spec.mean, std=spec.std, backbone=spec.name, head=config.eval_head, method=config.method,
        source=config.source, target=config.target, dataset=config.dataset or Path(config.data_root).name,
        interpolation=spec.interpolation, train_config=config.to_dict(), metrics=metrics or {},
    )


def rng_state() -> dict[str, Any]:
    """The RNG states a checkpoint saves, so ``--resume`` continues bit for bit."""
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
