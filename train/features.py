"""G's features of a fixed sample of both domains, before and after adaptation (the report's t-SNE, paper Fig. 3).

Training only writes data here (DESIGN.md: train/ never draws): ``features_before.npz`` when a
run starts, with the starting backbone, and ``features_after.npz`` when it ends, for the same
images, so the runtime's ``symnets report`` can show what adaptation did to the two domains.
Each file holds ``source``/``target`` features [n, D] (float16) and their ``*_labels``.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from symnets_deploy.atomic import atomic_write
from symnets_deploy.preprocess import PreprocessConfig
from symnets_deploy.train import data as domains
from symnets_deploy.train.evaluate import batched
from symnets_deploy.train.model import SymNet
from symnets_deploy.train.placement import DataPath

#: Images per domain in the t-SNE: enough to see clusters, few enough for a CPU run.
FEATURE_SAMPLE = 256


def sample_indices(count: int, limit: int = FEATURE_SAMPLE) -> np.ndarray:
    """Evenly spread indices into a domain's sorted samples (every class represented, deterministic)."""
    return np.unique(np.linspace(0, count - 1, num=min(count, limit)).round().astype(np.int64))


def extract(model: SymNet, images: torch.Tensor, batch_size: int, placement: DataPath) -> np.ndarray:
    """G(x) in eval mode and fp32 for uint8 [N,3,S,S] images: float32 [N, D]."""
    return batched(model.features, model, images, batch_size, placement).numpy()


def write_features(
    path: Path, model: SymNet, source: domains.Domain, target_images: torch.Tensor, target_labels: Optional[torch.Tensor],
    cfg: PreprocessConfig, batch_size: int, placement: DataPath, threads: int = 0,
) -> Path:
    """Decode the source sample, run G on both samples, and write ``path`` atomically.

    Args:
        target_images, target_labels: the whole target domain as decoded for evaluation (labels None:
            unlabeled; stored as -1, so the report colours the target by domain only).
    """
    src_index = sample_indices(len(source.samples))
    src_images, src_labels = domains.decode_eval(replace(source, samples=tuple(source.samples[i] for i in src_index)), cfg, threads)
    tgt_index = sample_indices(len(target_images))
    arrays = {
        "source": extract(model, src_images, batch_size, placement).astype(np.float16), "source_labels": src_labels.numpy(),
        "target": extract(model, target_images[tgt_index], batch_size, placement).astype(np.float16),
        "target_labels": target_labels[tgt_index].numpy() if target_labels is not None else np.full(len(tgt_index), domains.UNLABELED, dtype=np.int64),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return atomic_write(path, lambda tmp: tmp.write_bytes(buffer.getvalue()))
