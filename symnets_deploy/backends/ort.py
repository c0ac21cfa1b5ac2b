"""ONNX Runtime backend: CPU everywhere; CUDA and TensorRT execution providers with onnxruntime-gpu."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend, BatchLimits, TensorSpec
from symnets_deploy.card import ONNX_CARD_KEY, ONNX_PRECISION_KEY, ONNX_PROFILE_KEY, ModelCard
from symnets_deploy.enums import Device, parse_choice
from symnets_deploy.errors import ArtifactError, MissingDependencyError, UsageError
from symnets_deploy.external_data import check_external_data
from symnets_deploy.host import cache_root, usable_cpus
from symnets_deploy.monitoring import Profile


class Provider(str, Enum):
    """ONNX Runtime execution providers ``--provider`` accepts, in preference order."""

    tensorrt = "tensorrt"
    cuda = "cuda"
    cpu = "cpu"


#: Short provider name -> ONNX Runtime's name, in preference order (TensorRT, CUDA, CPU).
PROVIDERS = {
    Provider.tensorrt: "TensorrtExecutionProvider",
    Provider.cuda: "CUDAExecutionProvider",
    Provider.cpu: "CPUExecutionProvider",
}
_GPU_PROVIDERS = (Provider.tensorrt, Provider.cuda)


def _ort(extra: str = "cpu"):
    return require("onnxruntime", extra=extra, purpose="running an ONNX model")


def select_providers(device: Device | str, provider: Optional[Provider | str], available: Sequence[str]) -> list[str]:
    """ONNX Runtime provider names for a device/provider request, best first.

    The chosen provider comes first and the available ones after it in preference order
    follow, so operators it lacks fall back (TensorRT -> CUDA -> CPU), as ONNX Runtime intends.

    Args:
        device: ``auto`` (every available provider), ``cpu`` or ``cuda`` (TensorRT or CUDA).
        provider: an explicit ``Provider`` (or its name); None lets ``device`` decide.
        available: ``onnxruntime.get_available_providers()``.

    Returns:
        Provider names, e.g. ``["CUDAExecutionProvider", "CPUExecutionProvider"]``.

    Raises:
        UsageError: unknown provider name, or a provider that contradicts ``device``.
        MissingDependencyError: a GPU provider was asked for but this onnxruntime lacks it
            (``pip install 'symnets-deploy[gpu]'``).
    """
    device = Device(device)
    order = [p for p in PROVIDERS if PROVIDERS[p] in available]
    install_gpu = "pip install 'symnets-deploy[gpu]' (onnxruntime-gpu, in place of onnxruntime)"
    if provider is not None:
        provider = parse_choice(Provider, str(getattr(provider, "value", provider)).lower(), "provider")
        if device is not Device.auto and (device is Device.cpu) != (provider is Provider.cpu):
            raise UsageError(f"--provider {provider.value} contradicts --device {device.value}")
        if provider not in order:
            raise MissingDependencyError(f"the {provider.value} execution provider is not in this onnxruntime (available: {', '.join(available)}): {install_gpu}")
        wanted = order[order.index(provider):]
    elif device is Device.cpu:
        wanted = [Provider.cpu]
    elif device is Device.cuda:
        wanted = order
        if not any(p in order for p in _GPU_PROVIDERS):
            raise MissingDependencyError(f"--device cuda needs a GPU build of onnxruntime (available: {', '.join(available)}): {install_gpu}")
    else:
        wanted = order
    return [PROVIDERS[p] for p in wanted]


class OrtBackend(Backend):
    """Runs an exported ``.onnx`` (card in ``metadata_props``) with ONNX Runtime.

    Args:
        path: the ONNX file: input ``images`` float32 [N,3,H,W] RGB 0..255, outputs
            ``logits`` and ``probs`` float32 [N,K].
        device: ``auto`` (TensorRT, CUDA, CPU as available), ``cpu`` or ``cuda``.
        provider: an explicit ``Provider`` that overrides ``device``'s choice.
        threads: inference threads in total (0: one per CPU core this process may use); on
            the CPU they are split evenly over ``concurrency`` calls.
        concurrency: ``infer`` calls worth running at once (0: two on a CPU with two or more
            cores, else one; always one on a GPU). Sessions are thread-safe, and two
            single-threaded calls keep a small CPU busier than one call split over two threads,
            whose per-operator barriers stall whenever image decoding or another process takes
            a core.
        io_binding: bind inputs/outputs to the provider's device before each run; None turns
            it on exactly when the first provider is a GPU one.

    Raises (on ``activate``):
        UsageError: the file does not exist, or an impossible provider request.
        MissingDependencyError: onnxruntime (or its GPU build) is not installed.
        ArtifactError: ONNX Runtime cannot load the file or its I/O is not the contract's.
    """

    name = "onnxruntime"

    def __init__(
        self,
        path: str | Path,
        *,
        device: Device | str = Device.auto,
        provider: Optional[Provider | str] = None,
        threads: int = 0,
        concurrency: int = 0,
        io_binding: Optional[bool] = None,
    ) -> None:
        super().__init__()
        if threads < 0 or concurrency < 0:
            raise UsageError(f"threads and concurrency must be >= 0, got {threads} and {concurrency}")
        self.path = Path(path)
        self.device = Device(device)
        self.provider = provider
        self.threads = threads
        self.concurrency = concurrency
        self.io_binding = io_binding
        self.session = None
        self._binding_device = "cpu"
        self._calls = 1

    def _activate_impl(self) -> None:
        if not self.path.is_file():
            raise UsageError(f"{self.path}: model file not found")
        check_external_data(self.path)  # before onnxruntime, whose own checks depend on its version
        ort = _ort("gpu" if self.device is Device.cuda else "cpu")
        providers = select_providers(self.device, self.provider, ort.get_available_providers())
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        options.inter_op_num_threads = 1
        if providers[0] == PROVIDERS[Provider.cpu]:
            budget = self.threads or usable_cpus()
            self._calls = self.concurrency or min(2, budget)
            options.intra_op_num_threads = max(1, budget // self._calls)
        else:
            self._calls = 1  # one device queue; more host threads would only contend for it
            if self.threads:
                options.intra_op_num_threads = self.threads
        # Spinning workers burn the cores that the decoding threads need between runs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        provider_options = [self._provider_options(p) for p in providers]
        try:
            self.session = ort.InferenceSession(
                os.fspath(self.path), sess_options=options, providers=providers, provider_options=provider_options
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ArtifactError(f"{self.path}: ONNX Runtime cannot load it ({' '.join(str(exc).split())[:300]})") from None
        names = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if names != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(outputs):
            raise ArtifactError(f"{self.path}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAMES}, found {names} -> {outputs}")
        first = self.session.get_providers()[0]
        on_gpu = first in (PROVIDERS[Provider.tensorrt], PROVIDERS[Provider.cuda])
        # ONNX Runtime silently falls back to the CPU when a GPU provider cannot start
        # (missing CUDA/cuDNN libraries); an explicit GPU request must not run on the CPU.
        if first != providers[0] and (self.device is Device.cuda or self.provider is not None):
            raise MissingDependencyError(
                f"onnxruntime could not start {providers[0]} (CUDA / cuDNN libraries missing?); it offered {first} instead"
            )
        self._binding_device = "cuda" if on_gpu else "cpu"
        if self.io_binding is None:
            self.io_binding = on_gpu

    @staticmethod
    def _provider_options(name: str) -> dict[str, str]:
        if name != PROVIDERS[Provider.tensorrt]:
            return {}
        # Building a TensorRT engine takes minutes; cache it (one per input shape, which is why
        # this provider gets fixed-size batches).
        cache = cache_root() / "ort_tensorrt"
        cache.mkdir(parents=True, exist_ok=True)
        return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": "True"}

    def _deactivate_impl(self) -> None:
        self.session = None

    def _card_impl(self) -> ModelCard:
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_CARD_KEY not in meta:
            raise ArtifactError(f"{self.path}: no model card (metadata key {ONNX_CARD_KEY!r}); was it exported by symnets?")
        try:
            return ModelCard.from_json(meta[ONNX_CARD_KEY])
        except ArtifactError as exc:
            raise ArtifactError(f"{self.path}: {exc}") from None

    def _reference_profile_impl(self) -> Optional[Profile]:
        text = self.session.get_modelmeta().custom_metadata_map.get(ONNX_PROFILE_KEY)
        if text is None:
            return None
        try:
            return Profile.from_json(text)
        except ValueError as exc:
            raise ArtifactError(f"{self.path}: unreadable reference profile (metadata key {ONNX_PROFILE_KEY!r}): {exc}") from None

    def _output_classes_impl(self) -> Optional[int]:
        (probs,) = [o for o in self.session.get_outputs() if o.name == "probs"]
        return probs.shape[-1] if isinstance(probs.shape[-1], int) else None

    def _precision_impl(self) -> str:
        return self.session.get_modelmeta().custom_metadata_map.get(ONNX_PRECISION_KEY, "fp32")

    def _input_spec_impl(self) -> TensorSpec:
        inp = self.session.get_inputs()[0]
        shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
        return TensorSpec(inp.name, shape, "float32")

    def _max_concurrency_impl(self) -> int:
        return self._calls

    def _batch_limits_impl(self) -> BatchLimits:
        limits = super()._batch_limits_impl()
        if self.session.get_providers()[0] == PROVIDERS[Provider.tensorrt]:
            return BatchLimits(limits.min, limits.max, fixed=True)
        return limits

    def _infer_impl(self, images: np.ndarray) -> dict[str, np.ndarray]:
        if not self.io_binding:
            logits, probs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: images})
            return {"logits": logits, "probs": probs}
        binding = self.session.io_binding()
        binding.bind_cpu_input(INPUT_NAME, images)  # one host-to-device copy, done here
        for name in OUTPUT_NAMES:
            binding.bind_output(name, self._binding_device)
        self.session.run_with_iobinding(binding)
        logits, probs = binding.copy_outputs_to_cpu()
        return {"logits": logits, "probs": probs}

    @property
    def providers(self) -> list[str]:
        """Providers the active session uses, best first."""
        self.activate()
        return list(self.session.get_providers())
