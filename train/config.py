"""TrainConfig: every training option once; CLI options map onto its fields one to one.

Torch-free at import: ``symnets train``'s options take their defaults from ``DEFAULTS`` here, and
the CLI module is imported for every command, ``symnets predict`` on a torch-less device included.
"""

from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Optional

from symnets_deploy.enums import Ablation, DataOn, Device, Head, Method, TargetLabels, parse_choice
from symnets_deploy.errors import UsageError

#: ``weights`` value meaning "the backbone's own pretrained weights".
PRETRAINED = "imagenet"
#: Largest ``zoom``: a crop then shows a window of a quarter of its side at the most.
MAX_ZOOM = 4.0


@dataclass(frozen=True)
class TrainConfig:
    """A training run, resolved (saved as ``config.json`` in the run folder).

    Defaults follow the paper (section 4.1): head lr 0.01, G lr 10x lower, SGD momentum 0.9
    (Nesterov), weight decay 1e-4, lr annealing alpha 10 / beta 0.75, lambda gamma 10, random crops
    with mirroring. ``lr``, ``image_size``, ``flip`` and ``zoom`` left None take the backbone's
    (``BackboneSpec``): the paper's for the pretrained backbones, measured ones for ``tiny``;
    ``backbone_lr_mult`` left None follows the weights.
    """

    source: str
    target: str
    data_root: str
    dataset: Optional[str] = None
    backbone: str = "efficientnet_lite0"
    weights: Optional[str] = PRETRAINED
    method: str = Method.symnets.value
    ablation: str = Ablation.none.value
    head: str = Head.ct.value
    iterations: int = 1000
    batch_size: int = 32
    lr: Optional[float] = None
    backbone_lr_mult: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_alpha: float = 10.0
    lr_beta: float = 0.75
    lambda_gamma: float = 10.0
    image_size: Optional[int] = None
    flip: Optional[bool] = None
    zoom: Optional[float] = None
    device: str = Device.auto.value
    seed: int = 0
    out: str = "runs/latest"
    eval_every: Optional[int] = None
    checkpoint_every: int = 0
    keep_every: int = 0
    source_val: float = 0.1
    target_labels: str = TargetLabels.use.value
    log_every: int = 10
    eval_batch_size: int = 64
    threads: int = 0
    cache: bool = True
    cache_dir: Optional[str] = None
    cuda_graph: bool = True
    report: bool = True
    data_on: str = DataOn.auto.value

    def __post_init__(self) -> None:
        from symnets_deploy.train.backbones import get_backbone  # torch: only once a run is configured

        spec = get_backbone(self.backbone)
        if self.weights == PRETRAINED and spec.weights is None:
            object.__setattr__(self, "weights", None)  # a backbone without pretrained weights trains from scratch
        if self.image_size is None:
            object.__setattr__(self, "image_size", spec.input_size)
        if self.lr is None:
            object.__setattr__(self, "lr", spec.lr)
        if self.flip is None:
            object.__setattr__(self, "flip", spec.flip)
        if self.zoom is None:
            object.__setattr__(self, "zoom", spec.zoom)
        if self.backbone_lr_mult is None:
            # Paper: pretrained G learns 10x slower than the head; a randomly initialised G must not.
            object.__setattr__(self, "backbone_lr_mult", 0.1 if self.weights is not None else 1.0)
        for name, enum in (("method", Method), ("ablation", Ablation), ("head", Head), ("device", Device), ("data_on", DataOn), ("target_labels", TargetLabels)):
            object.__setattr__(self, name, parse_choice(enum, getattr(self, name), name).value)
        if self.method == Method.source_only and self.ablation != Ablation.none:
            raise UsageError("--ablation applies to --method symnets only")
        for name in ("iterations", "batch_size", "image_size", "eval_batch_size"):
            if getattr(self, name) <= 0:
                raise UsageError(f"{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0 <= self.source_val < 1:
            raise UsageError(f"source-val must be in [0, 1), got {self.source_val}")
        for name in ("eval_every", "checkpoint_every", "keep_every", "log_every", "threads"):
            if (getattr(self, name) or 0) < 0:
                raise UsageError(f"{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        numbers = ("lr", "zoom", "backbone_lr_mult", "momentum", "weight_decay", "lr_alpha", "lr_beta", "lambda_gamma", "source_val")
        bad = [f"--{n.replace('_', '-')} {getattr(self, n)}" for n in numbers if not math.isfinite(getattr(self, n))]
        if bad:
            raise UsageError(f"{', '.join(bad)}: must be a finite number")
        if self.lr <= 0:
            raise UsageError(f"lr must be positive, got {self.lr}")
        if not 1 <= self.zoom <= MAX_ZOOM:
            raise UsageError(f"zoom must be between 1 (no zoom) and {MAX_ZOOM}, got {self.zoom}")
        if not 0 <= self.momentum < 1 or self.weight_decay < 0:
            raise UsageError(f"need 0 <= momentum < 1 and weight-decay >= 0, got {self.momentum}, {self.weight_decay}")

    @property
    def eval_head(self) -> str:
        """The classifier whose accuracy is 'the' result: Cs when Ct gets no supervision."""
        return Head.cs.value if self.ablation == Ablation.no_ct_loss else self.head

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_saved(cls, data: dict[str, Any]) -> "TrainConfig":
        """A config saved by any version: fields added since take the value that version used."""
        return cls.from_dict({**LEGACY, **data})


#: Fields that change how fast a run goes or what it writes besides the model, not what it
#: computes: ``--resume`` accepts new values.
SPEED_ONLY = ("threads", "cache", "cache_dir", "cuda_graph", "report", "data_on")

#: What a run saved before a field existed did in its place (no held-out split, labels as found).
LEGACY: dict[str, Any] = {"source_val": 0.0, "keep_every": 0, "target_labels": TargetLabels.use.value, "eval_every": 0, "flip": True, "zoom": 1.0}

#: Default of every field that has one: ``symnets train``'s options start from these.
DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}


def same_setting(name: str, asked: Any, saved: Any) -> bool:
    """Whether two values of config field ``name`` mean the same (paths resolved, numbers as floats)."""
    if name in ("data_root", "out", "cache_dir", "weights") and asked is not None and saved is not None and asked != PRETRAINED:
        return Path(asked).resolve() == Path(saved).resolve()
    if isinstance(saved, float) or isinstance(asked, float):
        return asked is not None and saved is not None and float(asked) == float(saved)
    return asked == saved


def resumed_config(run: Path, given: dict[str, Any]) -> "TrainConfig":
    """The saved config of ``run`` for ``--resume``, checked against the options given with it.

    Args:
        run: the run folder (its ``config.json``).
        given: config field -> value of each option the user typed besides ``--resume``.

    Returns:
        The saved config with ``out`` = ``run`` and, when given, a larger ``iterations`` and
        new values of the ``SPEED_ONLY`` options.

    Raises:
        UsageError: no ``config.json``, or given options that contradict the run (each is named);
            ``--iterations`` may only grow, to train longer.
    """
    path = Path(run) / "config.json"
    if not path.is_file():
        raise UsageError(f"{path}: no run to resume (config.json missing)")
    saved = TrainConfig.from_saved({**json.loads(path.read_text(encoding="utf-8")), "out": str(run)}).to_dict()
    differences = []
    for name, asked in given.items():
        if name in SPEED_ONLY or (name == "iterations" and asked >= saved["iterations"]):
            continue
        if not same_setting(name, asked, saved.get(name)):
            differences.append(f"--{name.replace('_', '-')} {asked} (the run has {saved.get(name)})")
    if differences:
        raise UsageError(
            f"{run}: --resume continues the run with its saved options, but these differ: {'; '.join(differences)}; "
            "drop them, or start a new run with another --out"
        )
    changed = {name: given[name] for name in (*SPEED_ONLY, "iterations") if name in given}
    return TrainConfig.from_dict({**saved, **changed})
