"""Evaluation during and at the end of training: one forward pass, labeled and label-free numbers.

Every evaluation runs the model once over the target domain and the held-out source split,
decoded by the runtime's preprocessing (so the numbers are what ``predict`` will see), in fp32
without autocast. Target accuracy exists only where the target has class folders, and is for
evaluation only; the label-free scores (``symnets_deploy.label_free``) need no target label and
are what ``symnets select`` chooses by. train/ computes logits here and never reimplements a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch

from symnets_deploy import label_free
from symnets_deploy.enums import Head
from symnets_deploy.preprocess import PreprocessConfig
from symnets_deploy.run_files import LABELED, UNLABELED
from symnets_deploy.train import data as domains
from symnets_deploy.train.model import SymNet, deployed_logits
from symnets_deploy.train.placement import DataPath

#: Without --eval-every, evaluations may cost this share of the training's compute (an image
#: trained on costs about three forward passes, an image evaluated one) ...
EVAL_BUDGET = 0.05
#: ... and a run evaluates at most this many times (enough for the report's curves and the warnings).
MAX_EVALUATIONS = 10


def default_eval_every(iterations: int, images_per_iteration: int, eval_images: int) -> int:
    """The evaluation interval of a run without --eval-every: as many evaluations as ``EVAL_BUDGET``
    affords, at most ``MAX_EVALUATIONS``; 0 (at the end only) when fewer than two fit."""
    affordable = int(EVAL_BUDGET * 3 * iterations * images_per_iteration / max(1, eval_images))
    evaluations = min(MAX_EVALUATIONS, affordable)
    return iterations // evaluations if evaluations >= 2 else 0


@dataclass(frozen=True)
class EvalData:
    """What every evaluation runs on, decoded once.

    Attributes:
        target: uint8 [Nt,3,S,S] target images; ``target_labels`` [Nt], or None when unlabeled.
        source_val: uint8 [Nv,3,S,S] held-out source images (Nv may be 0) and ``source_val_labels`` [Nv].
        source_class_shares: [K] share of each class among all source images (the collapse alarm's reference).
        class_names: the K classes.
    """

    target: torch.Tensor
    target_labels: Optional[torch.Tensor]
    source_val: torch.Tensor
    source_val_labels: torch.Tensor
    source_class_shares: np.ndarray
    class_names: tuple[str, ...]

    @property
    def labeled(self) -> bool:
        return self.target_labels is not None


def load_eval_data(source: domains.Domain, source_val: domains.Domain, target: domains.Domain, cfg: PreprocessConfig, threads: int = 0) -> EvalData:
    """Decode the target and the held-out source images through the runtime's preprocessing.

    Args:
        source: the whole labeled source domain (for the class shares); source_val: its held-out part.
    """
    target_images, target_labels = domains.decode_eval(target, cfg, threads)
    val_images, val_labels = domains.decode_eval(source_val, cfg, threads)
    shares = np.bincount(source.labels, minlength=len(source.class_names)) / max(1, len(source.samples))
    return EvalData(target_images, target_labels, val_images, val_labels, shares, source.class_names)


@torch.no_grad()
def batched(fn: Callable[[torch.Tensor], torch.Tensor], model: torch.nn.Module, images: torch.Tensor, batch_size: int, placement: DataPath) -> torch.Tensor:
    """``fn`` over uint8 [N,3,S,S] images in batches, the model in eval mode, fp32: float32 [N, ...] on the CPU.

    fp32 without autocast: the card's numbers must be what the fp32 artifact gives, not a bf16
    approximation of them.
    """
    was_training = model.training
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = images[start : start + batch_size].to(placement.device, non_blocking=True).float()
        with torch.autocast(placement.device.type, enabled=False):
            out.append(fn(x.contiguous(memory_format=placement.memory_format())).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _heads(logits: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    return {head.value: deployed_logits(logits, head, k) for head in Head}


@dataclass(frozen=True)
class EvalResult:
    """One evaluation.

    Attributes:
        accuracies: ``acc_cs``, ``acc_ct``, ``acc_paired`` on the target in 0..1; empty without target labels.
        scores: ``label_free.label_free_scores`` of Ct (and Cs) on target and held-out source.
        collapse: ``label_free.collapse_reasons`` of ``scores`` (empty: no collapse).
        predicted: [Nt] target predictions of each head (for the final confusion matrix).
    """

    accuracies: dict[str, float]
    scores: dict[str, Any]
    collapse: list[str]
    predicted: dict[str, np.ndarray]

    def record(self, iteration: int) -> dict[str, Any]:
        """The ``metrics.jsonl`` line of this evaluation."""
        return {"iteration": iteration, **self.accuracies, "label_free": self.scores, "collapse": self.collapse}


def evaluate(model: SymNet, data: EvalData, batch_size: int, placement: DataPath) -> EvalResult:
    """Accuracy (with target labels) and label-free scores of every head, from one pass over ``data``."""
    k = len(data.class_names)
    target = _heads(batched(model, model, data.target, batch_size, placement), k)
    val_logits = batched(model, model, data.source_val, batch_size, placement)
    val = _heads(val_logits, k) if len(val_logits) else None
    predicted = {head: logits.argmax(1).numpy() for head, logits in target.items()}
    accuracies = {}
    if data.target_labels is not None:
        truth = data.target_labels.numpy()
        accuracies = {f"acc_{head}": float((p == truth).mean()) for head, p in predicted.items()}
    scores = label_free.label_free_scores(
        target["ct"].numpy(), target["cs"].numpy(),
        val["ct"].numpy() if val else None, val["cs"].numpy() if val else None, data.source_val_labels.numpy() if val else None,
    )
    collapse = label_free.collapse_reasons(scores, data.source_class_shares, class_names=data.class_names)
    return EvalResult(accuracies, json_safe(scores), collapse, predicted)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float (a diverged run's scores) as None: strict JSON everywhere."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def run_warnings(final: EvalResult, history: list[dict[str, Any]]) -> list[str]:
    """The end-of-run warnings: target predictions collapsed; held-out source accuracy fell from its best.

    Args:
        final: the last evaluation.
        history: every evaluation record of the run (``metrics.jsonl`` lines with ``label_free``), in order.
    """
    warnings = [f"target predictions collapsed: {'; '.join(final.collapse)}"] if final.collapse else []
    drop = label_free.source_val_drop([r["label_free"].get("source_val_acc_ct") for r in history])
    if drop:
        warnings.append(drop)
    return warnings


def card_metrics(result: EvalResult, iteration: int, warnings: list[str] = ()) -> dict[str, Any]:
    """The card's ``metrics`` after an evaluation: label-free scores always, target accuracy only with labels."""
    metrics: dict[str, Any] = {"iteration": iteration, "target_labels": LABELED if result.accuracies else UNLABELED, "label_free": result.scores}
    if result.accuracies:
        metrics.update(target_acc_ct=result.accuracies["acc_ct"], target_acc_cs=result.accuracies["acc_cs"])
    if warnings:
        metrics["warnings"] = list(warnings)
    return metrics
