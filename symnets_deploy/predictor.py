"""Predictions on new target-domain images: the API an edge application embeds.

    from symnets_deploy import Predictor

    with Predictor.load("model.onnx", device="auto", batch_size=16) as predictor:
        for p in predictor.predict_paths(["cam/0001.jpg", "cam/0002.png"]):
            print(p.path, p.label, p.confidence, p.status, p.error)

A pool of threads decodes and preprocesses images (``preprocess.preprocess_image``, the one
implementation) a bounded number of batches ahead, while ``backend.max_concurrency()`` runner
threads infer whole batches; ONNX Runtime and TensorRT release the GIL, so all of them proceed
at once. Results come out in input order. Classes, sizes and preprocessing come from the
artifact's card; nothing is guessed.
"""

from __future__ import annotations

from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, fields
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import numpy as np

from symnets_deploy.backends import Backend, open_backend
from symnets_deploy.card import ModelCard
from symnets_deploy.enums import Device
from symnets_deploy.errors import ArtifactError, ImageError, UsageError
from symnets_deploy.host import usable_cpus
from symnets_deploy.monitoring import Profile, RunningStats, flag_images
from symnets_deploy.preprocess import ImageInput, PreprocessConfig, preprocess_image, to_batch

#: Default images per ``infer`` call: good CPU throughput, small memory (see bench/predict_throughput.py).
DEFAULT_BATCH_SIZE = 16


class Status(str, Enum):
    """Outcome of one image."""

    ok = "ok"
    error = "error"


@dataclass(frozen=True)
class Prediction:
    """The result for one image.

    Attributes:
        path: the file as given, or None for an in-memory image.
        label: predicted class name (None on error).
        index: predicted class index into the card's ``class_names`` (None on error).
        confidence: probability of ``label``, 0..1 (None on error).
        topk_labels: the k most probable class names, most probable first.
        topk_probs: their probabilities, descending, summing to <= 1.
        status: ``"ok"`` or ``"error"`` (a ``Status`` value).
        error: one-line reason when ``status == "error"``, else ``""``.
        low_confidence: the confidence is below the reference's usual range (``monitoring.flag_images``);
            None when the artifact has no reference profile, or on error.
        unusual: the logits' energy lies outside the reference's range: an image unlike those the
            model was adapted to, worth pulling for labeling; None as for ``low_confidence``.
    """

    path: Optional[str]
    label: Optional[str] = None
    index: Optional[int] = None
    confidence: Optional[float] = None
    topk_labels: tuple[str, ...] = ()
    topk_probs: tuple[float, ...] = ()
    status: str = Status.ok.value
    error: str = ""
    low_confidence: Optional[bool] = None
    unusual: Optional[bool] = None

    @property
    def ok(self) -> bool:
        """Whether the image was predicted."""
        return self.status == Status.ok.value

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types, keys in ``FIELDS`` order (tuples become lists)."""
        data = {name: getattr(self, name) for name in FIELDS}
        data["topk_labels"], data["topk_probs"] = list(self.topk_labels), list(self.topk_probs)
        return data

    @classmethod
    def failed(cls, path: Optional[str], reason: str) -> "Prediction":
        """An error result; ``reason`` is folded onto one line."""
        return cls(path, status=Status.error.value, error=" ".join(str(reason).split()) or "unknown error")


#: Output columns / keys, in order.
FIELDS = tuple(f.name for f in fields(Prediction))


class Predictor:
    """Classifies images with any ``Backend`` whose artifact carries a model card.

    Args:
        backend: an ``OrtBackend``, ``TrtBackend``, ... (activated here).
        batch_size: images per ``infer`` call; fitted into the backend's ``BatchLimits``
            (a TensorRT profile), and a short last batch is padded where the backend wants
            fixed shapes or a minimum.
        top_k: how many classes each ``Prediction`` lists (capped at K).
        workers: decoding/preprocessing threads (0: one per CPU, at most 4).
        prefetch: batches decoded ahead of the one being inferred (bounds memory).
        window: monitor only the last this many images (None: every image since the last
            ``reset_monitoring``); used only when the artifact carries a reference profile.

    Raises:
        UsageError: ``top_k``, ``batch_size``, ``workers`` or ``prefetch`` out of range.
        ArtifactError: no or invalid card, or a card whose input size contradicts the engine.
    """

    def __init__(
        self, backend: Backend, *, batch_size: int = DEFAULT_BATCH_SIZE, top_k: int = 5, workers: int = 0, prefetch: int = 2, window: Optional[int] = None,
    ) -> None:
        if batch_size < 1 or top_k < 1 or workers < 0 or prefetch < 0 or (window is not None and window < 1):
            raise UsageError(f"need batch_size >= 1, top_k >= 1, workers >= 0, prefetch >= 0, window >= 1; got {batch_size}, {top_k}, {workers}, {prefetch}, {window}")
        self.backend = backend.activate()
        self.card: ModelCard = backend.card()
        self.preprocess = PreprocessConfig.from_card(self.card)
        # Found at load, not at the first batch: a wrong card must not cost a folder scan.
        mismatches = self.card.graph_mismatches(backend.input_spec().shape[2:], backend.output_classes())
        if mismatches:
            raise ArtifactError(f"{self._source(backend)}: {'; '.join(mismatches)}")
        self.limits = backend.batch_limits()
        self.batch_size = self.limits.fit(batch_size)
        self.top_k = min(top_k, self.card.num_classes)
        self.workers = workers or min(4, usable_cpus())
        self.prefetch = prefetch
        self.profile: Optional[Profile] = backend.reference_profile()
        self.monitor: Optional[RunningStats] = RunningStats(self.profile, window=window) if self.profile is not None else None
        self._observers: list[Callable[[np.ndarray], None]] = [self.monitor.update] if self.monitor is not None else []

    @classmethod
    def load(
        cls,
        path: str | Path,
        device: Device | str = Device.auto,
        batch_size: int = DEFAULT_BATCH_SIZE,
        *,
        provider: Optional[str] = None,
        threads: int = 0,
        top_k: int = 5,
        workers: int = 0,
        window: Optional[int] = None,
    ) -> "Predictor":
        """Open an ``.onnx`` or ``.plan`` artifact and read its card.

        Args:
            path: the artifact (``.plan`` needs its ``.plan.json`` sidecar beside it).
            device: ``auto`` (GPU when available), ``cpu`` or ``cuda``.
            batch_size: images per inference call.
            provider: ONNX Runtime provider (``tensorrt``, ``cuda``, ``cpu``) overriding ``device``.
            threads: inference threads in total (0: one per CPU core).
            top_k: classes listed per prediction.
            workers: decoding threads (0: automatic).
            window: monitor the last this many images only (None: all; see ``monitoring_summary``).

        Returns:
            A ready ``Predictor``; use it as a context manager or call ``close()``.

        Raises:
            UsageError: missing file, unknown suffix, device or provider.
            MissingDependencyError: the backend's extra is not installed (exit code 4).
            ArtifactError: invalid or mismatched artifact, card or sidecar (exit code 5).
        """
        backend = open_backend(path, device=device, provider=provider, threads=threads)
        try:
            return cls(backend, batch_size=batch_size, top_k=top_k, workers=workers, window=window)
        except BaseException:
            backend.deactivate()
            raise

    @property
    def precision(self) -> str:
        """The artifact's precision, ``"fp32"``, ``"fp16"`` or ``"int8"``: every variant runs through the same API."""
        return self.backend.precision()

    @property
    def class_names(self) -> tuple[str, ...]:
        """Class names in output index order (from the card)."""
        return self.card.class_names

    # -- public ------------------------------------------------------------------------------
    def monitoring_summary(self) -> Optional[dict[str, Any]]:
        """How the images predicted so far compare with the artifact's reference profile.

        No label is used: ``estimated_accuracy`` is estimated from the model's own outputs.

        Returns:
            ``monitoring.RunningStats.summary()`` (``images``, ``estimated_accuracy``,
            ``reference_estimated_accuracy``, ``drift``, ``reasons``, ``low_confidence_share``,
            ``class_shares``, ...) over every image since the last ``reset_monitoring`` (or the
            last ``window`` images); None when the artifact has no reference profile
            (``symnets profile`` adds one).
        """
        return self.monitor.summary() if self.monitor is not None else None

    @contextmanager
    def observing(self, callback: Callable[[np.ndarray], None]) -> Iterator[None]:
        """Within the block, call ``callback`` with the logits of every batch predicted, in input order.

        Args:
            callback: receives float32 [n, K] logits of the images of a batch that decoded
                (failed images have none), from the thread that iterates the predictions.
        """
        self._observers.append(callback)
        try:
            yield
        finally:
            self._observers.remove(callback)

    def reset_monitoring(self) -> None:
        """Forget the images monitored so far (e.g. at the start of each day of a long-running app)."""
        if self.monitor is not None:
            self.monitor.reset()

    def predict_paths(self, paths: Iterable[str | Path]) -> list[Prediction]:
        """Predict image files; unreadable ones become ``status="error"`` results.

        Args:
            paths: image files (any Pillow format; EXIF orientation, palette, alpha,
                grayscale, CMYK and 16-bit are handled).

        Returns:
            One ``Prediction`` per path, in input order.

        Raises:
            ArtifactError: the engine's outputs contradict the card (e.g. K differs).
        """
        return list(self.iter_predict_paths(paths))

    def iter_predict_paths(self, paths: Iterable[str | Path]) -> Iterator[Prediction]:
        """Like ``predict_paths``, but lazy: results stream out batch by batch.

        Args:
            paths: image files, consumed only a bounded number of batches ahead.

        Returns:
            An iterator of one ``Prediction`` per path, in input order.
        """
        return self.iter_predict((str(p), p) for p in paths)

    def predict_images(self, images: Sequence[ImageInput]) -> list[Prediction]:
        """Predict in-memory images.

        Args:
            images: ``PIL.Image`` objects of any mode, or uint8 arrays [H,W], [H,W,3] (RGB)
                or [H,W,4] (RGBA); file paths are accepted too.

        Returns:
            One ``Prediction`` per image, in order; ``path`` is None for in-memory images.
        """
        return list(self.iter_predict((str(i) if isinstance(i, (str, Path)) else None, i) for i in images))

    def iter_predict(self, items: Iterable[tuple[Optional[str], ImageInput]]) -> Iterator[Prediction]:
        """The pipeline: decode ahead in threads, infer in fixed-size batches, yield in order.

        Args:
            items: ``(name, image)`` pairs; ``name`` becomes ``Prediction.path``.

        Yields:
            One ``Prediction`` per item, in input order.

        Raises:
            ArtifactError: the engine's outputs contradict the card (e.g. K differs).
        """
        items = iter(items)
        window = self.batch_size * (self.prefetch + 1)
        calls = self.backend.max_concurrency()
        decoders = ThreadPoolExecutor(self.workers, thread_name_prefix="symnets-decode")
        runners = ThreadPoolExecutor(calls, thread_name_prefix="symnets-infer")
        pending: deque[tuple[Optional[str], Future]] = deque()
        running: deque[Future] = deque()

        def fill() -> None:
            for name, image in items:
                pending.append((name, decoders.submit(_load, name, image, self.preprocess)))
                if len(pending) >= window:
                    return

        try:
            fill()
            while pending:
                chunk = [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]
                fill()  # the decoders work on the next batches while this one waits and runs
                running.append(runners.submit(self._run_chunk, [(name, future.result()) for name, future in chunk]))
                # One batch more than there are runners is queued, so a runner never waits for
                # this thread to collect the next batch.
                while len(running) > calls:
                    yield from self._observed(*running.popleft().result())
            while running:
                yield from self._observed(*running.popleft().result())
        finally:
            decoders.shutdown(wait=True, cancel_futures=True)
            runners.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Release the backend (session, engine, device memory)."""
        self.backend.deactivate()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    def _source(backend: Backend) -> str:
        """The artifact's path for error messages (the backend's name when it has none)."""
        return str(getattr(backend, "path", backend.name))

    def _run_chunk(self, loaded: list[tuple[Optional[str], np.ndarray | str]]) -> tuple[list[Prediction], Optional[np.ndarray]]:
        """Predictions of one batch, in order, and the logits [n_ok, K] of those that decoded (for the monitor)."""
        results: list[Optional[Prediction]] = [None] * len(loaded)
        good = [i for i, (_, crop) in enumerate(loaded) if isinstance(crop, np.ndarray)]
        for i, (name, crop) in enumerate(loaded):
            if not isinstance(crop, np.ndarray):
                results[i] = Prediction.failed(name, crop)
        if not good:
            return results, None
        logits, probs = self._infer([loaded[i][1] for i in good])
        low, unusual = flag_images(logits, self.profile) if self.profile is not None else (None, None)
        for row, i in enumerate(good):
            flags = {} if low is None else {"low_confidence": bool(low[row]), "unusual": bool(unusual[row])}
            results[i] = self._prediction(loaded[i][0], probs[row], **flags)
        return results, logits

    def _observed(self, predictions: list[Prediction], logits: Optional[np.ndarray]) -> list[Prediction]:
        """Feed a batch's logits to the observers in input order (this thread only), then hand its predictions on."""
        if logits is not None:
            for callback in self._observers:
                callback(logits)
        return predictions

    def _infer(self, crops: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        count = len(crops)
        batch = to_batch(crops)
        rows = self.limits.rows_for(count, self.batch_size)
        if rows > count:
            batch = np.concatenate([batch, np.zeros((rows - count, *batch.shape[1:]), dtype=batch.dtype)])
        outputs = self.backend.infer(batch)
        probs = outputs["probs"]
        if probs.ndim != 2 or probs.shape != (rows, self.card.num_classes):
            raise ArtifactError(f"{self._source(self.backend)}: probs of shape {probs.shape}, expected {(rows, self.card.num_classes)} for the card's {self.card.num_classes} classes")
        return outputs["logits"][:count], probs[:count]

    def _prediction(self, name: Optional[str], probs: np.ndarray, **flags: bool) -> Prediction:
        order = np.argsort(-probs, kind="stable")[: self.top_k]
        labels = tuple(self.card.class_names[i] for i in order)
        top = tuple(float(probs[i]) for i in order)
        return Prediction(name, labels[0], int(order[0]), top[0], labels, top, **flags)


def _load(name: Optional[str], image: ImageInput, cfg: PreprocessConfig) -> np.ndarray | str:
    """Preprocess one image in a worker thread: the crop, or the one-line reason it failed."""
    try:
        return preprocess_image(image, cfg)
    except ImageError as exc:
        return str(exc)
    except Exception as exc:
        # open_image maps Pillow's known decoder errors to ImageError; this is the last guard
        # for anything else, so one bad file never ends a run over thousands.
        return f"{name or 'image'}: cannot decode ({type(exc).__name__}: {exc})"
