"""TensorRT engine build from the exported ONNX, through the TensorRT Python API (10.x and 11.x).

Precision comes from the ONNX (fp16 weights and compute are in the graph), and the network is
created STRONGLY_TYPED: TensorRT 11 removed the FP16/INT8 builder flags, and 10.x honours the
same flag. ``import tensorrt`` happens only inside these functions, so everything else in the
package works on machines without it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from symnets_deploy._optional import require
from symnets_deploy.backends.base import INPUT_NAME
from symnets_deploy.enums import Precision
from symnets_deploy.errors import ArtifactError, UsageError
from symnets_deploy.gpu import CudaDevice, require_tensorrt
from symnets_deploy.host import cache_root
from symnets_deploy.atomic import atomic_write

DEFAULT_WORKSPACE_MIB = 1024


@dataclass(frozen=True)
class TrtProfile:
    """Batch sizes of the engine's one optimisation profile (``--min-batch/--opt-batch/--max-batch``).

    Raises:
        UsageError: a size is not an integer >= 1, or not min <= opt <= max.
    """

    min: int = 1
    opt: int = 8
    max: int = 32

    def __post_init__(self) -> None:
        values = {"min-batch": self.min, "opt-batch": self.opt, "max-batch": self.max}
        bad = [f"--{k} {v!r}" for k, v in values.items() if isinstance(v, bool) or not isinstance(v, int) or v < 1]
        if bad:
            raise UsageError(f"batch sizes must be integers >= 1, got {', '.join(bad)}")
        if not self.min <= self.opt <= self.max:
            raise UsageError(f"need --min-batch <= --opt-batch <= --max-batch, got {self.min}, {self.opt}, {self.max}")

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}

    def shapes(self, image_size: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) shapes of the ``images`` input [N,3,S,S]."""
        return tuple((n, 3, image_size, image_size) for n in (self.min, self.opt, self.max))  # type: ignore[return-value]


def default_timing_cache(tensorrt_version: str, device: CudaDevice) -> Path:
    """A per-version, per-architecture timing cache under the user's cache folder, reused across builds."""
    return cache_root() / f"tensorrt-{tensorrt_version}-sm{device.compute_capability.replace('.', '')}.timing-cache"


def _parse_onnx(trt, builder, logger, onnx_path: Path):
    # STRONGLY_TYPED: tensor types come from the ONNX (fp16 Casts included); the flag is ignored by
    # TensorRT 11, where strong typing is always on. EXPLICIT_BATCH is implied since 10.0.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.fspath(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ArtifactError(f"{onnx_path}: TensorRT's ONNX parser refused it ({' '.join(errors.split())[:400]})")
    return network, parser


def _load_timing_cache(config, path: Optional[Path]) -> None:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    # A cache from another TensorRT version or GPU is refused rather than mixed in; start afresh.
    if cache is None or not config.set_timing_cache(cache, ignore_mismatch=False):
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)


def build_engine(
    onnx_path: Path,
    out: Path,
    *,
    profile: TrtProfile,
    workspace_mib: int = DEFAULT_WORKSPACE_MIB,
    timing_cache: Optional[Path] = None,
    precision: Precision | str = Precision.fp32,
) -> Path:
    """Build and serialize a TensorRT engine (``out``, a raw plan loadable by trtexec/Polygraphy).

    Args:
        onnx_path: the exported, checked ONNX (its dtypes decide the engine's precision).
        out: plan file to write.
        profile: batch sizes of the optimisation profile.
        workspace_mib: builder workspace memory pool limit, MiB.
        timing_cache: file read before and written after the build (None: no cache).
        precision: the ONNX's precision; fp32 builds disable TF32 so fp32 means fp32.

    Raises:
        MissingDependencyError: no TensorRT (exit code 4).
        ArtifactError: the parser or the builder failed.
    """
    if workspace_mib < 1:
        raise UsageError(f"--workspace-mib must be >= 1, got {workspace_mib}")
    trt = require_tensorrt("building a TensorRT engine")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _parse_onnx(trt, builder, logger, Path(onnx_path))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mib << 20)
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None and Precision(precision) is Precision.fp32:
        # TF32 (on by default on Ampere and newer) rounds fp32 matmul/conv inputs to 10 mantissa
        # bits, which alone exceeds the fp32 bound of 1e-4 on logits.
        config.clear_flag(tf32)
    image_size = network.get_input(0).shape[-1]
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(INPUT_NAME, *profile.shapes(image_size))
    config.add_optimization_profile(opt_profile)
    _load_timing_cache(config, timing_cache)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ArtifactError(f"{onnx_path}: TensorRT could not build an engine (see the TensorRT log above)")
    atomic_write(Path(out), lambda tmp: tmp.write_bytes(bytes(memoryview(plan))))
    if timing_cache is not None:
        atomic_write(Path(timing_cache), lambda tmp: tmp.write_bytes(bytes(memoryview(config.get_timing_cache().serialize()))))
    return Path(out)


def trt_runner(plan: Path, name: str = "tensorrt"):
    """Polygraphy's ``TrtRunner`` over a plan file, for the equivalence check (needs TensorRT and a GPU)."""
    require_tensorrt("running a TensorRT engine")
    trt_backend = require("polygraphy.backend.trt", extra="export", purpose="running a TensorRT engine in the equivalence check")
    data = Path(plan).read_bytes()
    return trt_backend.TrtRunner(trt_backend.EngineFromBytes(data), name=name)
