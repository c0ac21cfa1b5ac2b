"""Batch prediction as a Ray Data job: the same Predictor in every actor, the same rows as ``predict``.

    import ray
    from symnets_deploy.ray_batch import predict_dataset

    ds = ray.data.from_items([{"path": p} for p in paths])      # or any Dataset with a "path" column
    rows = predict_dataset(ds, "model.onnx", concurrency=8).take_all()

Each actor loads the model once and runs ``Predictor.predict_paths`` on its batches, so decoding,
preprocessing and inference are exactly those of ``symnets predict``, and an unreadable file is an
error row, never a failed task. Ray is imported only here (``pip install 'symnets-deploy[ray]'``).

Failures stay ours: a cluster address is checked (form, Ray Client installed, something listening)
before ``ray.init``, so a wrong one fails in seconds instead of Ray retrying for minutes, and a
``SymnetsError`` raised in an actor comes back to the driver as itself, not as Ray's traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence
from urllib.parse import urlsplit

import numpy as np

from symnets_deploy._optional import is_available, require
from symnets_deploy.errors import MissingDependencyError, SymnetsError, UsageError
from symnets_deploy.predictor import FIELDS, Prediction

#: Columns the job adds to a dataset: every field of ``Prediction`` except the path it already has.
COLUMNS = tuple(name for name in FIELDS if name != "path")
_ORDER, _RAW, _LOGITS = "symnets_order", "symnets_path_bytes", "symnets_logits"
#: The ``--ray`` forms ``cluster_endpoint`` accepts.
ADDRESS_FORMS = "local, auto, HOST:PORT or ray://HOST:PORT"
#: Seconds a cluster address gets to accept a TCP connection (``symnets predict --help`` states it).
CONNECT_TIMEOUT_S = 5.0


class ActorFailure(Exception):
    """A ``SymnetsError`` on its way out of an actor, as ``args[0]``.

    Ray Data appends its retry advice to an exception's first argument when that is a string, which
    would make our one-line message several; this wrapper's first argument is the error itself.
    """

    def __str__(self) -> str:
        return str(self.args[0])


class PredictBatches:
    """``map_batches`` worker: one Predictor per actor, loaded once (Ray constructs it in the actor)."""

    def __init__(self, **options: Any) -> None:
        from symnets_deploy.predictor import Predictor

        # An actor that fails in __init__ reaches the driver as ActorDiedError with our error only as
        # text, after Ray has restarted it; raised from the first batch, the error arrives as itself.
        self.predictor, self.failure = None, None
        try:
            self.predictor = Predictor.load(**options)
        except SymnetsError as exc:
            self.failure = exc

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        if self.failure is not None:
            raise ActorFailure(self.failure)
        try:
            return self._predict(batch)
        except SymnetsError as exc:
            raise ActorFailure(exc) from None

    def _predict(self, batch: dict[str, Any]) -> dict[str, Any]:
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


def cluster_endpoint(address: str) -> Optional[tuple[str, int]]:
    """The ``(host, port)`` a ``--ray`` address names; None for a cluster Ray starts or finds (``local``, ``auto``).

    Args:
        address: one of ``ADDRESS_FORMS`` (``""`` means ``local``).

    Raises:
        UsageError: any other form, or no port (exit code 2).
        MissingDependencyError: ``ray://`` without Ray Client (``pip install 'ray[client]'``, exit code 4).
    """
    if address in ("", "local", "auto"):
        return None
    scheme, sep, rest = address.partition("://")
    if not sep:
        scheme, rest = "", address
    try:
        parts = urlsplit("//" + rest)
        host, port = parts.hostname, parts.port
    except ValueError:  # a port that is not a number in 0..65535
        host = port = None
    if scheme not in ("", "ray") or not host or not port or parts.path or parts.query or parts.fragment or parts.username:
        raise UsageError(f"--ray {address}: not a Ray address (valid: {ADDRESS_FORMS})")
    if scheme == "ray" and not is_available("grpc"):  # what ray.init checks, with a traceback, for ray://
        raise MissingDependencyError(f"--ray {address}: Ray Client (ray://) needs 'grpc': pip install 'ray[client]', or give the cluster's HOST:PORT")
    return host, port


def connect(address: str, *, num_cpus: Optional[int] = None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """``ray.init`` for a ``--ray`` address that fails in seconds with our errors, not Ray's retries.

    Args:
        address: one of ``ADDRESS_FORMS``; ``local`` starts a Ray instance here with ``num_cpus`` CPUs
            (default all) even when ``RAY_ADDRESS`` names another; ``auto`` joins the cluster
            ``RAY_ADDRESS`` or ``ray start`` names.
        timeout: seconds the address gets to accept a TCP connection.

    Raises:
        UsageError: a malformed address, or no cluster answers there (exit code 2).
        MissingDependencyError: Ray, or for ``ray://`` Ray Client, is not installed (exit code 4).
    """
    ray = require("ray", extra="ray", purpose="batch prediction on Ray")
    endpoint = cluster_endpoint(address)
    if address == "auto" and os.environ.get("RAY_ADDRESS"):  # what Ray itself would join
        endpoint = cluster_endpoint(os.environ["RAY_ADDRESS"])
    if endpoint is not None:
        try:  # Ray retries an address that refuses for about 13 minutes: ask the port first
            socket.create_connection(endpoint, timeout=timeout).close()
        except OSError as exc:
            raise UsageError(f"--ray {address}: no Ray cluster answers at {endpoint[0]}:{endpoint[1]} within {timeout:g} s "
                             f"({exc.strerror or exc}); start one with 'ray start --head' or use --ray local") from None
    local = address in ("", "local")
    # Something that listens but is no Ray head: one connection attempt of Ray's (about 40 s), not 20.
    # Joining only: a head Ray starts here waits this long for its own GCS.
    attempts = {} if local else {"RAY_gcs_server_port_wait_time_s": os.environ.get("RAY_gcs_server_port_wait_time_s", "1")}
    with _environ(**attempts):
        try:
            ray.init(address="local" if local else address, num_cpus=num_cpus if local else None, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
        except ConnectionError as exc:  # its first sentence: the rest is about Ray's own --address flag
            why = str(exc).splitlines()[0].split(". ")[0].rstrip(".")
            raise UsageError(f"--ray {address}: cannot join a Ray cluster ({why}); start one with 'ray start --head' or use --ray local") from None


def predict_paths_ray(
    paths: Sequence[str | Path], engine: str | Path, *, address: str = "local", num_cpus: Optional[int] = None,
    monitor: Optional[Callable[[np.ndarray], None]] = None, **options: Any,
) -> list[Prediction]:
    """``symnets predict --ray``: predict files as a Ray Data job; the results in the order of ``paths``.

    Open the engine with ``Predictor.load`` first to fail before any cluster starts, as the CLI does.

    Args:
        address: see ``connect``; ignored when Ray is already initialised (that cluster is used).
        monitor: called with the logits [n,K] of the predicted images in the order of ``paths``
            (e.g. ``monitoring.RunningStats.update``), so the summary equals ``symnets predict``'s.
        options: ``predict_dataset``'s keyword arguments.

    Raises:
        MissingDependencyError: Ray is not installed (extra ``ray``).
        UsageError: see ``connect``.
        SymnetsError: the one an actor raised (e.g. ``ArtifactError`` for a model it cannot open).
    """
    ray = require("ray", extra="ray", purpose="batch prediction on Ray")
    require("ray.data", extra="ray", purpose="batch prediction on Ray")
    started = not ray.is_initialized()
    if started:
        connect(address, num_cpus=num_cpus)
    try:
        names = [os.fspath(p) for p in paths]
        items = [{_ORDER: i, _RAW: os.fsencode(name)} for i, name in enumerate(names)]
        with _quiet_data_context(ray):
            rows = predict_dataset(ray.data.from_items(items), engine, **options).take_all()
    except ray.exceptions.RayError as exc:
        ours = _symnets_cause(exc)
        if ours is None:
            raise
        raise ours from None
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


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block, then restore them."""
    old = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_data_context(ray) -> Iterator[None]:
    """Our job's Ray Data settings: no progress bars or error logs (the CLI prints its own lines),
    and a task's own exception raised as the task error's ``cause`` instead of a ``UserCodeException``."""
    context, logger = ray.data.DataContext.get_current(), logging.getLogger("ray.data")
    settings = {"enable_progress_bars": False, "raise_original_map_exception": True}
    old = {name: getattr(context, name) for name in settings if hasattr(context, name)}  # older Ray lacks some
    level = logger.level
    for name in old:
        setattr(context, name, settings[name])
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for name, value in old.items():
            setattr(context, name, value)
        logger.setLevel(level)


def _symnets_cause(error: BaseException) -> Optional[SymnetsError]:
    """The ``SymnetsError`` an actor raised, found inside Ray's wrappers (``RayTaskError.cause``, ``__cause__``)."""
    from ray.exceptions import RayError

    todo, seen = [error], set()
    while todo:
        err = todo.pop(0)
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ActorFailure) and not isinstance(err, RayError):  # not RayTaskError(ActorFailure): its args are Ray's
            return err.args[0]
        cause = getattr(err, "cause", None)
        todo += [cause if isinstance(cause, BaseException) else None, err.__cause__, err.__context__]
    return None
