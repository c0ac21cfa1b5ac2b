"""Stand-ins for ``tensorrt`` and cuda-python's runtime, so ``TrtBackend`` runs here (issue 9).

TensorRT cannot be installed on these machines, yet ``TrtBackend``'s own code (buffer sizes,
copies, shapes, batching, clean-up, error paths) must run in a test. These two modules follow
the documented API that the backend uses, and nothing more:

* ``cudart``: "device" memory is host memory handed out by ``cudaMalloc``; every copy is checked
  against the allocation it touches (a copy past a buffer is ``cudaErrorInvalidValue``, not a
  silent overwrite), and leaks are visible (``memory.blocks``, ``streams``).
* ``tensorrt``: a plan file holds a linear model's weights (``make_plan``); the engine reads its
  input from the address bound with ``set_tensor_address`` and writes logits and probabilities
  to the output addresses, so a wrong address, size or shape changes the numbers.

Streams: ``cudaMemcpyAsync`` and ``execute_async_v3`` check their arguments when called and queue
the work on their stream; ``cudaStreamSynchronize`` runs that stream's queue, in order. Until then
a device-to-host copy's destination holds NaN (0xFF bytes), so a backend that reads an output
before synchronising gets NaN instead of the numbers, and a test comparing with
``expected_outputs`` fails. What a stand-in cannot check: nothing runs concurrently (the queued
work runs synchronously, inside the synchronise, on this thread), so races between streams or
between host and device, pinned versus pageable memory, and timing go unseen; a stream destroyed
with work queued drops that work.

The expected outputs are computed with NumPy in ``expected_outputs``, independently of the backend.
"""

from __future__ import annotations

import ctypes
import enum
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Callable, Optional

import numpy as np

from symnets_deploy.card import ModelCard
from symnets_deploy.sidecar import EngineSidecar, sha256_file, write_sidecar

MAGIC = b"STAND-IN TENSORRT PLAN\n"


class cudaError_t(enum.IntEnum):  # noqa: N801 - cuda-python's names
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100


class DataType(enum.Enum):
    FLOAT = np.float32
    HALF = np.float16


class TensorIOMode(enum.Enum):
    INPUT = 1
    OUTPUT = 2


@dataclass
class DeviceMemory:
    """Allocations by base address; copies must stay inside one."""

    blocks: dict[int, np.ndarray] = field(default_factory=dict)
    fail_after: Optional[int] = None  # cudaMalloc fails once this many blocks were handed out
    allocated: int = 0

    def malloc(self, nbytes: int):
        if self.fail_after is not None and self.allocated >= self.fail_after:
            return cudaError_t.cudaErrorMemoryAllocation, 0
        block = np.zeros(nbytes, dtype=np.uint8)
        self.blocks[block.ctypes.data] = block
        self.allocated += 1
        return cudaError_t.cudaSuccess, block.ctypes.data

    def region(self, address: int, nbytes: int) -> Optional[np.ndarray]:
        """The bytes ``[address, address + nbytes)`` when they lie in one allocation."""
        for base, block in self.blocks.items():
            if base <= address and address + nbytes <= base + block.nbytes:
                return block[address - base: address - base + nbytes]
        return None


def make_cudart(devices: int = 1, capability: str = "9.0") -> ModuleType:
    """A ``cuda.bindings.runtime`` with ``devices`` GPUs of ``capability``."""
    rt = ModuleType("cuda.bindings.runtime")
    memory = DeviceMemory()
    major, minor = (int(x) for x in capability.split("."))
    ok = cudaError_t.cudaSuccess
    rt.memory, rt.streams, rt.current = memory, set(), None
    rt.queued: dict[int, list[Callable[[], None]]] = {}  # per stream: work that runs at its synchronise
    rt.cudaError_t = cudaError_t
    rt.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def set_device(index):
        if index >= devices:
            return (cudaError_t.cudaErrorInvalidValue,)
        rt.current = index
        return (ok,)

    def properties(index):
        if index >= devices:
            return cudaError_t.cudaErrorInvalidValue, None
        return ok, SimpleNamespace(name=b"Stand-in GPU\x00\x00", major=major, minor=minor)

    def stream_create():
        stream = 1000 + len(rt.streams)
        rt.streams.add(stream)
        rt.queued[stream] = []
        return ok, stream

    def stream_destroy(stream):
        if int(stream) not in rt.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        rt.streams.discard(int(stream))
        rt.queued.pop(int(stream), None)
        return (ok,)

    def synchronize(stream):
        if int(stream) not in rt.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        work, rt.queued[int(stream)] = rt.queued[int(stream)], []
        for run in work:
            run()
        return (ok,)

    def free(address):
        return (ok,) if memory.blocks.pop(int(address), None) is not None else (cudaError_t.cudaErrorInvalidValue,)

    def memcpy(dst, src, nbytes, kind, stream):
        to_device = kind == rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        region = memory.region(int(dst if to_device else src), nbytes)  # a view: the block outlives a cudaFree
        if int(stream) not in rt.streams or region is None:
            return (cudaError_t.cudaErrorInvalidValue,)
        host = int(src if to_device else dst)
        if to_device:
            rt.queued[int(stream)].append(lambda: ctypes.memmove(region.ctypes.data, host, nbytes))
        else:
            ctypes.memset(host, 0xFF, nbytes)  # not there yet: NaN until the stream is synchronised
            rt.queued[int(stream)].append(lambda: ctypes.memmove(host, region.ctypes.data, nbytes))
        return (ok,)

    rt.cudaGetDeviceCount = lambda: (ok, devices) if devices else (cudaError_t.cudaErrorNoDevice, 0)
    rt.cudaGetDeviceProperties = properties
    rt.cudaSetDevice = set_device
    rt.cudaMalloc = memory.malloc
    rt.cudaFree = free
    rt.cudaStreamCreate = stream_create
    rt.cudaStreamDestroy = stream_destroy
    rt.cudaStreamSynchronize = synchronize
    rt.cudaMemcpyAsync = memcpy
    return rt


class Engine:
    """A deserialised stand-in plan: ``logits = mean_rgb(images) @ weight.T + bias``."""

    def __init__(self, arrays: dict[str, np.ndarray], rt: ModuleType) -> None:
        self.weight, self.bias, self.rt = arrays["weight"], arrays["bias"], rt
        self.size = int(arrays["size"])
        self.min, self.max = (int(v) for v in arrays["profile"])
        self.names = [str(n) for n in arrays["names"]]
        self.out_type = DataType.HALF if str(arrays["out_dtype"]) == "float16" else DataType.FLOAT
        self.fail_execute = bool(arrays["fail_execute"])

    @property
    def num_io_tensors(self) -> int:
        return len(self.names)

    def get_tensor_name(self, index: int) -> str:
        return self.names[index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return TensorIOMode.INPUT if name == self.names[0] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, 3, self.size, self.size) if name == self.names[0] else (-1, len(self.bias))

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT if name == self.names[0] else self.out_type

    def create_execution_context(self) -> "Context":
        return Context(self)


class Context:
    def __init__(self, engine: Engine) -> None:
        self.engine, self.shape, self.addresses = engine, None, {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        e = self.engine
        if name != e.names[0] or tuple(shape[1:]) != (3, e.size, e.size) or not e.min <= shape[0] <= e.max:
            return False
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return self.shape if name == self.engine.names[0] else (self.shape[0], len(self.engine.bias))

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = int(address)
        return True

    def execute_async_v3(self, stream: int) -> bool:
        """Check the bindings now (TensorRT reads shape and addresses when enqueuing); compute at the synchronise."""
        e, memory = self.engine, self.engine.rt.memory
        if e.fail_execute or self.shape is None or self.shape[0] < 1 or int(stream) not in e.rt.streams or set(self.addresses) != set(e.names):
            return False
        shape, itemsize = self.shape, np.dtype(e.out_type.value).itemsize
        source = memory.region(self.addresses[e.names[0]], int(np.prod(shape)) * 4)
        targets = [memory.region(self.addresses[name], shape[0] * len(e.bias) * itemsize) for name in e.names[1:]]
        if source is None or any(t is None for t in targets):
            return False

        def run() -> None:
            logits, probs = expected_outputs(source.view(np.float32).reshape(shape), e.weight, e.bias)
            for target, values in zip(targets, (logits, probs)):
                target[:] = np.frombuffer(values.astype(e.out_type.value).tobytes(), np.uint8)

        e.rt.queued[int(stream)].append(run)
        return True


def make_tensorrt(rt: ModuleType, version: str = "10.3.0") -> ModuleType:
    """A ``tensorrt`` whose Runtime deserialises ``make_plan`` files (anything else: ``None``)."""
    trt = ModuleType("tensorrt")
    trt.__version__ = version
    trt.DataType, trt.TensorIOMode = DataType, TensorIOMode
    trt.nptype = lambda dtype: dtype.value
    trt.Logger = type("Logger", (), {"ERROR": 3, "WARNING": 2, "__init__": lambda self, severity=2: None})

    class Runtime:
        def __init__(self, logger) -> None:
            self.logger = logger

        def deserialize_cuda_engine(self, data: bytes):
            if not data.startswith(MAGIC):
                return None
            with np.load(io.BytesIO(data[len(MAGIC):])) as arrays:
                return Engine(dict(arrays), rt)

    trt.Runtime = Runtime
    return trt


def install(monkeypatch, *, devices: int = 1, capability: str = "9.0", version: str = "10.3.0") -> tuple[ModuleType, ModuleType]:
    """Put the stand-ins where ``import tensorrt`` and ``import cuda.bindings.runtime`` find them."""
    rt = make_cudart(devices, capability)
    trt = make_tensorrt(rt, version)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", rt)
    return trt, rt


def expected_outputs(images: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits, probs) of the stand-in model, in float64 NumPy."""
    logits = images.astype(np.float64).mean(axis=(2, 3)) @ weight.T + bias
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return logits, shifted / shifted.sum(axis=1, keepdims=True)


def make_plan(
    folder: Path, card: ModelCard, weight: np.ndarray, bias: np.ndarray, *, profile=(1, 8), version: str = "10.3.0",
    capability: str = "9.0", names=("images", "logits", "probs"), out_dtype: str = "float32", fail_execute: bool = False,
    name: str = "model.plan", weights_sha256: Optional[str] = None, reference_profile: Optional[dict] = None,
) -> Path:
    """A stand-in plan holding ``weight`` [K,3] and ``bias`` [K], with a valid sidecar."""
    buffer = io.BytesIO()
    np.savez(
        buffer, weight=weight, bias=bias, size=card.input_size, profile=np.array(profile), names=np.array(names),
        out_dtype=np.array(out_dtype), fail_execute=np.array(fail_execute),
    )
    plan = folder / name
    plan.write_bytes(MAGIC + buffer.getvalue())
    low, high = profile
    write_sidecar(plan, EngineSidecar(
        card=card.to_dict(), tensorrt_version=version, gpu_name="Stand-in GPU", compute_capability=capability,
        profile={"min": low, "opt": high, "max": high}, precision="fp32", onnx_sha256="0" * 64,
        plan_sha256=sha256_file(plan), package_version="0.1.0", created="2026-11-28T00:00:00+00:00",
        weights_sha256=weights_sha256, reference_profile=reference_profile,
    ))
    return plan
