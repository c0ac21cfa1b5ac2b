"""Batch prediction as a Ray Data job: the same Predictor in every actor, the same rows as ``predict``.

    import ray
    from symnets_deploy.ray_batch import predict_dataset

    ds = ray.data.from_items([{"path": p} for p in paths])      # or any Dataset with a "path" column
    rows = predict_dataset(ds, "model.onnx", concurrency=8).take_all()

Each actor loads the model once and runs ``Predictor.predict_paths`` on its batches, so decoding,
preprocessing and inference are exactly those of ``symnets predict``, and an unreadable file is an
error row, never a failed task. Ray is imported only here (``pip install 'symnets-deploy[ray]'``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.predictor import FIELDS, Prediction

#: Columns the job adds to a dataset: every field of ``Prediction`` except the path it already has.
COLUMNS = tuple(name for name in FIELDS if name != "path")
_ORDER, _RAW, _LOGITS = "symnets_order", "symnets_path_bytes", "symnets_logits"


class PredictBatches:
    """``map_batches`` worker: one Predictor per actor, loaded once (Ray constructs it in the actor)."""

    def __init__(self, **options: Any) -> None:
        from symnets_deploy.predictor import Predictor

        self.predictor = Predictor.load(**options)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        # File names travel as bytes when given so (not every name is valid UTF-8, Arrow strings must be).
        paths = [os.fsdecode(bytes(p)) for p in batch[_RAW]] if _RAW in batch else [str(p) for p in batch["path"]]
        batches: list[np.ndarray] = []
        with self.predictor.observing(batches.append):
            predictions = self.predictor.predict_paths(paths)
        rows = [p.to_dict() for p in predictions]
        out = {key: list(values) for key, values in batch.items()}
        out.update({name: [row[name] for row in rows] for name in COLUMNS})
        if _RAW in batch:  # our own job (not a user's dataset): each image's logits travel back for the monitor
            logits = iter(np.concatenate(batches).tolist() if batches else [])
            out[_LOGITS] = [next(logits) if p.ok else None for p in predictions]
        return out


def predict_dataset(
    dataset, engine: str | Path, *, concurrency: int = 2, batch_size: int = 16, top_k: int = 5, device: str = "cpu",
    threads: int = 1, provider: Optional[str] = None,
):
    """Add the prediction columns (``COLUMNS``: label, index, confidence, topk_labels, topk_probs, status, error) to a Ray Dataset.

    Args:
        dataset: a ``ray.data.Dataset`` with a ``path`` column of image files every worker can read.
        engine: ``model.onnx`` or ``model.plan`` readable by every worker.
        concurrency: actors, each with its own model.
        batch_size: images per inference call, also the Ray batch size.
        threads: inference threads per actor.

    Returns:
        The lazy dataset; its rows keep their other columns.
    """
    from ray.data import ActorPoolStrategy

    options = {"path": str(engine), "device": device, "batch_size": batch_size, "top_k": top_k, "threads": threads, "provider": provider}
    return dataset.map_batches(
        PredictBatches, fn_constructor_kwargs=options, batch_size=batch_size, compute=ActorPoolStrategy(size=concurrency), batch_format="numpy",
    )


def predict_paths_ray(
    paths: Sequence[str | Path], engine: str | Path, *, address: str = "local", num_cpus: Optional[int] = None,
    monitor: Optional[Callable[[np.ndarray], None]] = None, **options: Any,
) -> list[Prediction]:
    """``symnets predict --ray``: predict files as a Ray Data job; the results in the order of ``paths``.

    Args:
        address: ``"local"`` starts a Ray instance on this machine (``num_cpus`` CPUs, default all),
            anything else is passed to ``ray.init`` (``"auto"``, ``"ray://head:10001"``).
        monitor: called with the logits [n,K] of the predicted images in the order of ``paths``
            (e.g. ``monitoring.RunningStats.update``), so the summary equals ``symnets predict``'s.
        options: ``predict_dataset``'s keyword arguments.

    Raises:
        MissingDependencyError: Ray is not installed (extra ``ray``).
    """
    ray = require("ray", extra="ray", purpose="batch prediction on Ray")
    require("ray.data", extra="ray", purpose="batch prediction on Ray")
    started = not ray.is_initialized()
    if started:
        local = address in ("", "local")
        ray.init(address=None if local else address, num_cpus=num_cpus if local else None, include_dashboard=False,
                 log_to_driver=False, logging_level=logging.WARNING, configure_logging=True)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # the CLI prints its own summary line
        ray.data.DataContext.get_current().enable_progress_bars = False
        names = [os.fspath(p) for p in paths]
        items = [{_ORDER: i, _RAW: os.fsencode(name)} for i, name in enumerate(names)]
        rows = predict_dataset(ray.data.from_items(items), engine, **options).take_all()
    finally:
        if started:
            ray.shutdown()
    rows.sort(key=lambda row: row[_ORDER])
    logits = [row[_LOGITS] for row in rows if row.get(_LOGITS) is not None]
    if monitor is not None and logits:
        monitor(np.asarray([np.asarray(v, dtype=np.float32) for v in logits]))
    flag = lambda v: None if v is None else bool(v)  # noqa: E731
    return [
        Prediction(
            path=names[row[_ORDER]], label=row["label"], index=None if row["index"] is None else int(row["index"]),
            confidence=None if row["confidence"] is None else float(row["confidence"]),
            topk_labels=tuple(str(v) for v in row["topk_labels"]), topk_probs=tuple(float(v) for v in row["topk_probs"]),
            status=str(row["status"]), error=str(row["error"]), low_confidence=flag(row["low_confidence"]), unusual=flag(row["unusual"]),
        )
        for row in rows
    ]
