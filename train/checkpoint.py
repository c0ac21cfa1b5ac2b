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


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's generator states, so that ``--resume`` continues bit for bit: the CPU
    generator's and, on CUDA, that of this process's own GPU (the one its random draws use)."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def rng_record(states: list[dict[str, Any]]) -> dict[str, Any]:
    """A checkpoint's ``rng``: every rank's ``rng_state`` in rank order (``ranks``); ``torch`` repeats
    rank 0's CPU state (the same tensor, stored once), where format-1 readers find it."""
    return {"ranks": list(states), "torch": states[0]["torch"]}


def restore_rng(saved: dict[str, Any], rank: int, size: int, device: torch.device) -> str:
    """Restore this rank's generators from a checkpoint's ``rng``, as far as they fit this run.

    Also reads format 1 (``torch`` and ``cuda``: one process's CPU state and every GPU's it saw).

    Returns:
        Why the run cannot continue exactly (another number of processes, or GPU generator states
        that do not match this run's device), "" when it can. The generators without a saved
        state keep the seed's.
    """
    ranks = saved["ranks"] if "ranks" in saved else [_format1_state(saved, device)]
    lost = []
    if len(ranks) != size:
        lost.append(f"it was saved by {len(ranks)} process{'es' if len(ranks) != 1 else ''} and continues with {size}")
    own = ranks[rank] if rank < len(ranks) else None
    if own is not None:
        torch.set_rng_state(own["torch"])
        cuda = own.get("cuda")
        if cuda is not None and device.type == "cuda":
            torch.cuda.set_rng_state(cuda, device)
        elif cuda is not None:
            lost.append("it holds GPU generator states and continues on the CPU")
        elif device.type == "cuda":
            lost.append(f"it holds no generator state for {device}")
    return "; ".join(lost)


def _format1_state(saved: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A format-1 ``rng`` as one rank's state: its CPU state and the state of the GPU this process uses."""
    state = {"torch": saved["torch"]}
    gpus = list(saved.get("cuda") or [])
    index = (device.index if device.index is not None else torch.cuda.current_device()) if device.type == "cuda" else 0
    if index < len(gpus):
        state["cuda"] = gpus[index]  # on the CPU: kept so that restore_rng says the GPU states are lost
    return state
