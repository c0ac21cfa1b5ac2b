"""Native TensorRT backend for ``.plan`` engines (TensorRT 10.x / 11.x tensor-name API).

The ``model.plan.json`` sidecar is read before anything is imported or deserialised, and
checked against the installed TensorRT version and the GPU's compute capability
(``sidecar.check_plan``): a plan only runs where it was built, and a mismatch is a clear
``ArtifactError``, not a crash inside ``deserialize_cuda_engine``. Device memory goes through
cuda-python's runtime bindings (``symnets_deploy.gpu``), never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from symnets_deploy.backends.base import INPUT_NAME, OUTPUT_NAMES, Backend, BatchLimits, TensorSpec
from symnets_deploy.card import ModelCard
from symnets_deploy.enums import Device
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.gpu import cuda_call, cuda_device, cudart, require_tensorrt
from symnets_deploy.monitoring import Profile
from symnets_deploy.sidecar import check_plan

_PURPOSE = "running a TensorRT plan"


def plan_batch_limits(profile: Mapping[str, int]) -> BatchLimits:
    """Batch sizes an engine's optimisation profile allows.

    Args:
        profile: the sidecar's validated ``{"min": int, "opt": int, "max": int}``.

    Returns:
        ``BatchLimits(min, max, fixed=False)``: TensorRT takes any batch size inside the
        profile without rebuilding, so only a batch below ``min`` is padded.
    """
    return BatchLimits(int(profile["min"]), int(profile["max"]), fixed=False)


class TrtBackend(Backend):
    """Runs a serialized TensorRT engine (``.plan``) whose sidecar matches this machine.

    Args:
        plan: the engine file; ``plan + ".json"`` holds card, TensorRT version, compute
            capability, profile and checksums (``symnets_deploy.sidecar``).
        device: ``auto`` or ``cuda``; ``cpu`` is a usage error (a plan runs on a GPU only).
        device_index: which CUDA device to run on.

    Raises (on ``activate``):
        UsageError: the plan does not exist, or ``device="cpu"``.
        ArtifactError: sidecar missing, invalid or mismatched (TensorRT version, GPU compute
            capability, plan checksum), or an engine whose I/O is not the contract's.
        MissingDependencyError: ``tensorrt`` or cuda-python is not installed (extra ``trt``),
            or no CUDA device is visible.
    """

    name = "tensorrt"

    def __init__(self, plan: str | Path, *, device: Device | str = Device.auto, device_index: int = 0) -> None:
        super().__init__()
        self.path = Path(plan)
        self.device = Device(device)
        self.device_index = device_index
        self.sidecar = None
        self._card: ModelCard | None = None
        self._limits = BatchLimits()
        self._engine = self._context = self._runtime = self._stream = self._cudart = self._trt = None
        self._buffers: dict[str, int] = {}

    def _activate_impl(self) -> None:
        if not self.path.is_file():
            raise UsageError(f"{self.path}: engine file not found")
        if self.device is Device.cpu:
            raise UsageError(f"{self.path}: a TensorRT plan runs on a CUDA GPU only; use the .onnx for --device cpu")
        # Sidecar and checksum first: a stray or replaced plan fails with exit 5 even where
        # TensorRT is absent, and nothing unchecked reaches deserialize_cuda_engine.
        sidecar = check_plan(self.path)
        card = sidecar.model_card()
        limits = plan_batch_limits(sidecar.profile)
        trt = require_tensorrt(_PURPOSE)
        runtime = cudart(_PURPOSE)
        device = cuda_device(_PURPOSE, self.device_index, runtime)
        check_plan(self.path, tensorrt_version=trt.__version__, compute_capability=device.compute_capability)
        cuda_call(runtime.cudaSetDevice(self.device_index), "cudaSetDevice")
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ArtifactError(f"{self.path}: TensorRT {trt.__version__} could not deserialize the plan")
        modes = {engine.get_tensor_name(i): engine.get_tensor_mode(engine.get_tensor_name(i)) for i in range(engine.num_io_tensors)}
        inputs = [n for n, m in modes.items() if m == trt.TensorIOMode.INPUT]
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(modes):
            raise ArtifactError(f"{self.path}: expected input {INPUT_NAME!r} and outputs {OUTPUT_NAMES}, found {list(modes)}")
        self._trt, self._cudart, self._engine = trt, runtime, engine
        self.sidecar, self._card, self._limits = sidecar, card, limits
        try:
            self._context = engine.create_execution_context()
            self._stream = cuda_call(runtime.cudaStreamCreate(), "cudaStreamCreate")
            self._allocate(card)
        except BaseException:
            self._deactivate_impl()
            raise

    def _allocate(self, card: ModelCard) -> None:
        # Buffers sized for the profile's max batch are allocated once; smaller batches reuse them.
        spec = self._input_spec_impl()
        height, width = (d if d is not None else card.input_size for d in spec.shape[2:])
        sizes = {INPUT_NAME: self._limits.max * 3 * height * width * 4}
        for name in OUTPUT_NAMES:
            itemsize = np.dtype(self._trt.nptype(self._engine.get_tensor_dtype(name))).itemsize
            sizes[name] = self._limits.max * card.num_classes * itemsize
        for name, nbytes in sizes.items():
            self._buffers[name] = cuda_call(self._cudart.cudaMalloc(nbytes), "cudaMalloc")

    def _deactivate_impl(self) -> None:
        if self._cudart is not None:
            for ptr in self._buffers.values():
                self._cudart.cudaFree(ptr)
            if self._stream is not None:
                self._cudart.cudaStreamDestroy(self._stream)
        self._buffers = {}
        self._context = self._engine = self._runtime = self._stream = None

    def _card_impl(self) -> ModelCard:
        return self._card

    def _precision_impl(self) -> str:
        return self.sidecar.precision

    def _reference_profile_impl(self) -> Optional[Profile]:
        if self.sidecar.reference_profile is None:
            return None
        try:
            return Profile.from_dict(self.sidecar.reference_profile)
        except ValueError as exc:
            raise ArtifactError(f"{self.path}: unreadable reference profile in its sidecar: {exc}") from None

    def _output_classes_impl(self) -> Optional[int]:
        classes = int(self._engine.get_tensor_shape("probs")[-1])
        return classes if classes >= 0 else None

    def _input_spec_impl(self) -> TensorSpec:
        shape = tuple(int(d) for d in self._engine.get_tensor_shape(INPUT_NAME))
        return TensorSpec(INPUT_NAME, tuple(d if d >= 0 else None for d in shape), "float32")

    def _batch_limits_impl(self) -> BatchLimits:
        return self._limits

    def _infer_impl(self, images: np.ndarray) -> dict[str, np.ndarray]:
        rt, context, count = self._cudart, self._context, images.shape[0]
        if not self._limits.min <= count <= self._limits.max:
            raise UsageError(f"{self.path}: batch of {count} is outside the engine's profile [{self._limits.min}, {self._limits.max}]")
        if not context.set_input_shape(INPUT_NAME, tuple(images.shape)):
            raise UsageError(f"{self.path}: TensorRT refused input shape {tuple(images.shape)}")
        h2d, d2h = rt.cudaMemcpyKind.cudaMemcpyHostToDevice, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_call(rt.cudaMemcpyAsync(self._buffers[INPUT_NAME], images.ctypes.data, images.nbytes, h2d, self._stream), "copy to device")
        for name, ptr in self._buffers.items():
            context.set_tensor_address(name, ptr)
        if not context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.path}: TensorRT execute_async_v3 failed (see the TensorRT log above)")
        out = {}
        for name in OUTPUT_NAMES:
            dtype = self._trt.nptype(self._engine.get_tensor_dtype(name))
            out[name] = np.empty(tuple(context.get_tensor_shape(name)), dtype=dtype)
            cuda_call(rt.cudaMemcpyAsync(out[name].ctypes.data, self._buffers[name], out[name].nbytes, d2h, self._stream), "copy to host")
        cuda_call(rt.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return {name: np.asarray(arr, dtype=np.float32) for name, arr in out.items()}
