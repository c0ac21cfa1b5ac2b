"""Each bound of the fp16 and int8 gates decides the verdict (issue 19 item 20).

The candidates are the project's tiny model (``tiny_onnx``) with a controlled error added to one
graph output: an ``Add`` of a constant [N,K] between the network and the output, so the difference
from the reference is exactly that constant. For every bound of ``TOLERANCES`` (probs p99, probs
max, top-1 agreement) a candidate just past it fails ``compare`` and one just inside passes; the
bounds are read from ``TOLERANCES``, not restated. A last test breaks a real fp16 conversion
subtly (finite errors, no overflow) and sees the fp16 gate refuse it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")
pytest.importorskip("polygraphy")
pytest.importorskip("torch")  # the tiny model is exported from a training run

from onnx import numpy_helper  # noqa: E402

from symnets_deploy.backends.ort import OrtBackend  # noqa: E402
from symnets_deploy.enums import Precision  # noqa: E402
from symnets_deploy.export.compare import compare  # noqa: E402
from symnets_deploy.export.fp16 import convert_to_fp16, isolate_outputs  # noqa: E402
from symnets_deploy.export.tolerances import TOLERANCES  # noqa: E402
from tests.runtime.conftest import tiny_onnx  # noqa: E402,F401  (fixture)

#: Check images: one top-1 flip is 0.5 % of them, and 12 images are 2 % of the N x K probabilities (above the 99th percentile).
N = 200
#: "Just" past or inside a bound: 5 % of it.
MARGIN = 0.05
GATED = [(precision, bound) for precision in (Precision.fp16, Precision.int8) for bound in ("p99", "max", "top1")]


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).uniform(0, 255, (N, 3, 32, 32)).astype(np.float32)


@pytest.fixture(scope="module")
def reference(tiny_onnx: Path, images: np.ndarray) -> dict[str, np.ndarray]:  # noqa: F811
    with OrtBackend(tiny_onnx) as backend:
        return backend.infer(images)


def _with_errors(source: Path, out: Path, errors: dict[str, np.ndarray]) -> Path:
    """``source`` with ``errors[name]`` (float32 [N,K]) added to graph output ``name``; nothing else changes."""
    model = onnx.load(str(source))
    isolate_outputs(model)  # each output is now an Identity of the network's tensor: make it an Add
    for node in model.graph.node:
        name = node.output[0]
        if node.op_type == "Identity" and name in errors and node.name == f"output_{name}":
            node.op_type = "Add"
            node.input.append(f"{name}_error")
            model.graph.initializer.append(numpy_helper.from_array(errors[name].astype(np.float32), f"{name}_error"))
    onnx.save(model, str(out))
    return out


def _errors(reference: dict[str, np.ndarray], bound: str, value: float) -> dict[str, np.ndarray]:
    """Errors that move one statistic to ``value`` and leave the others at rest.

    p99: 12 images' top probability raised by ``value`` (2 % of the probabilities, so the 99th
    percentile is ``value`` whatever the interpolation); max: one image's; top1: ``value`` images'
    decision flipped to their runner-up in the logits (probs untouched, no probability moves).
    Raising the top class never changes the decision.
    """
    logits, probs = reference["logits"], reference["probs"]
    d_logits, d_probs = np.zeros_like(logits), np.zeros_like(probs)
    top = probs.argmax(1)
    if bound == "p99":
        rows = np.arange(12)
        d_probs[rows, top[rows]] = value
    elif bound == "max":
        d_probs[0, top[0]] = value
    else:
        order = logits.argsort(1)
        for i in range(int(value)):
            first, second = order[i, -1], order[i, -2]
            d_logits[i, second] = logits[i, first] - logits[i, second] + 0.01
    return {"logits": d_logits, "probs": d_probs}


@pytest.mark.parametrize("side", ["inside", "past"])
@pytest.mark.parametrize("precision, bound", GATED, ids=[f"{p.value}-{b}" for p, b in GATED])
def test_a_candidate_just_past_a_bound_fails_and_one_just_inside_passes(
    precision: Precision, bound: str, side: str, tiny_onnx: Path, images: np.ndarray, reference: dict, tmp_path: Path,  # noqa: F811
) -> None:
    tolerance = TOLERANCES[precision]
    if bound == "top1":
        allowed = int(N * (1 - tolerance.top1) + 1e-9)  # flips the bound allows on N images
        assert allowed >= 1, "N too small for a flip inside the bound"
        value: float = allowed if side == "inside" else allowed + 1
    else:
        limit = tolerance.bounds_of("probs")[bound]  # KeyError: the gate lost this bound
        value = limit * (1 - MARGIN if side == "inside" else 1 + MARGIN)
    candidate = _with_errors(tiny_onnx, tmp_path / "candidate.onnx", _errors(reference, bound, value))

    report = compare(OrtBackend(tiny_onnx), [OrtBackend(candidate)], [images], tolerance=tolerance)

    (comparison,) = report.comparisons
    probs = comparison.outputs["probs"]
    if bound == "top1":
        assert comparison.top1_agree == pytest.approx(1 - value / N) and probs.stats["max"] == 0.0
    else:
        assert probs.stats[bound] == pytest.approx(value, rel=1e-4) and comparison.top1_agree == 1.0
        assert probs.broken() == ([] if side == "inside" else [f"{bound} {probs.stats[bound]:.3g} > {limit:g}"])
    assert bool(report) is (side == "inside"), report.table()


def test_a_subtly_broken_fp16_model_fails_the_fp16_gate(tiny_onnx: Path, images: np.ndarray, reference: dict, tmp_path: Path) -> None:  # noqa: F811
    """The real fp16 conversion passes; with one class's bias raised by 0.1 (stored in fp16) it fails,
    with every difference finite and small: no overflow, one bias a little off. (Measured: probs p99
    and max 0.022, every decision unchanged: the p99 bound is what refuses it.)"""
    fp16 = convert_to_fp16(onnx.load(str(tiny_onnx)))
    onnx.save(fp16, str(tmp_path / "fp16.onnx"))
    (bias,) = [t for t in fp16.graph.initializer if t.name.endswith("head.bias")]
    values = numpy_helper.to_array(bias).copy()
    k = reference["probs"].shape[1]
    values[k] += np.float16(0.1)  # the first class of Ct, the deployed head
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    onnx.save(fp16, str(tmp_path / "broken.fp16.onnx"))

    fine, broken = (compare(OrtBackend(tiny_onnx), [OrtBackend(tmp_path / name)], [images], tolerance=TOLERANCES[Precision.fp16])
                    for name in ("fp16.onnx", "broken.fp16.onnx"))

    assert fine, fine.table()
    assert not broken, broken.table()
    probs = broken.comparisons[0].outputs["probs"]
    assert np.isfinite(list(probs.stats.values())).all() and probs.stats["max"] < 0.1
    assert "p99" in [line.split()[0] for line in probs.broken()]  # the spread of small errors, not an inf, is what fails
