"""Every choice name the project accepts, defined once.

Typer uses these Enums for ``choices=``, configs store their ``.value``, and no module spells
a format, head or precision as a bare string of its own (timm's ``json-record(s)`` bug).
"""

from __future__ import annotations

from enum import Enum
from typing import TypeVar

from symnets_deploy.errors import UsageError

E = TypeVar("E", bound=Enum)


def parse_choice(enum: type[E], value, what: str) -> E:
    """``value`` (a member or its string value) as a member of ``enum``.

    Raises:
        UsageError: not a valid value; the message lists the valid ones.
    """
    try:
        return enum(getattr(value, "value", value))
    except ValueError:
        raise UsageError(f"unknown {what} {value!r} (valid: {', '.join(str(e.value) for e in enum)})") from None


class Head(str, Enum):
    """Which classifier of the SymNet an artifact deploys.

    ``ct``: the target task classifier (paper default); ``cs``: the source task classifier;
    ``paired``: softmax over all 2K outputs summed pairwise, q_k = p_k + p_{k+K} (eq. 10).
    """

    ct = "ct"
    cs = "cs"
    paired = "paired"


class Method(str, Enum):
    """What ``symnets train`` trains: the paper's SymNet, or the source-only baseline (G + K-way head)."""

    symnets = "symnets"
    source_only = "source-only"


class Ablation(str, Enum):
    """Switches for the paper's Table 4 (section 4.3)."""

    none = "none"
    no_ct_loss = "no-ct-loss"  # w/o E_t_task (6); evaluate with Cs
    no_entropy = "no-entropy"  # w/o M_st (10)
    no_confusion = "no-confusion"  # w/o (9), and (8) degraded to the category loss (13)
    domain_confusion_only = "domain-confusion-only"  # (8) degraded to the domain-level (12)


class TargetLabels(str, Enum):
    """What training does with target class folders that match the source's: ``use`` them to
    evaluate (never to train or choose), or ``ignore`` them (an honest label-free experiment)."""

    use = "use"
    ignore = "ignore"


class DataOn(str, Enum):
    """Where a CUDA training run keeps its decoded images; ``auto``: on the GPU when they fit its budget."""

    auto = "auto"
    gpu = "gpu"
    host = "host"


class Precision(str, Enum):
    """Numeric precision of an exported artifact (inputs and outputs stay float32).

    ``int8``: ONNX Runtime static quantization (QDQ), made for CPUs.
    """

    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class ExportFormat(str, Enum):
    """Artifact formats ``symnets export`` writes."""

    onnx = "onnx"
    trt = "trt"


class Device(str, Enum):
    """Where work runs; ``auto`` picks CUDA when present."""

    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class OutputFormat(str, Enum):
    """Prediction file formats."""

    csv = "csv"
    jsonl = "jsonl"
