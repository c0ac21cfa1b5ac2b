"""The TensorRT/CUDA stand-in behaves like a stream: nothing a backend queues is there before the synchronise.

``TrtBackend`` is tested against ``trt_standin`` (``test_backend_trt.py``); these tests hold the stand-in
to the part of the CUDA contract that makes those tests able to fail: device-to-host copies and
engine runs land only at ``cudaStreamSynchronize``, and until then the host buffer holds NaN.
"""

from __future__ import annotations

import numpy as np

from . import trt_standin

OK = trt_standin.cudaError_t.cudaSuccess


def _device_copy(rt, host: np.ndarray) -> tuple[int, int]:
    """A stream and a device buffer holding ``host``, synchronised."""
    (_, stream), (_, buffer) = rt.cudaStreamCreate(), rt.cudaMalloc(host.nbytes)
    assert rt.cudaMemcpyAsync(buffer, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream) == (OK,)
    assert rt.cudaStreamSynchronize(stream) == (OK,)
    return stream, buffer


def test_a_copy_to_the_host_arrives_at_the_synchronise_and_is_nan_before() -> None:
    rt = trt_standin.make_cudart()
    values = np.arange(6, dtype=np.float32)
    stream, buffer = _device_copy(rt, values)
    out = np.zeros(6, dtype=np.float32)
    assert rt.cudaMemcpyAsync(out.ctypes.data, buffer, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream) == (OK,)
    assert np.isnan(out).all()  # read before the synchronise: not the numbers
    assert rt.cudaStreamSynchronize(stream) == (OK,)
    np.testing.assert_array_equal(out, values)


def test_a_copy_to_the_device_reads_the_host_buffer_when_the_stream_runs() -> None:
    """As on a GPU, the host buffer of an async copy must stay as it is until the synchronise."""
    rt = trt_standin.make_cudart()
    stream, buffer = _device_copy(rt, np.zeros(4, dtype=np.float32))
    host = np.full(4, 1.0, dtype=np.float32)
    rt.cudaMemcpyAsync(buffer, host.ctypes.data, host.nbytes, rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)
    host[:] = 2.0  # changed after the call, before the synchronise
    out = np.empty(4, dtype=np.float32)
    rt.cudaMemcpyAsync(out.ctypes.data, buffer, out.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    rt.cudaStreamSynchronize(stream)
    np.testing.assert_array_equal(out, 2.0)


def test_an_engine_run_lands_in_its_outputs_at_the_synchronise(tmp_path) -> None:
    from tests.runtime.test_backend_trt import BIAS, CARD, WEIGHT

    rt = trt_standin.make_cudart()
    trt = trt_standin.make_tensorrt(rt)
    engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(trt_standin.make_plan(tmp_path, CARD, WEIGHT, BIAS).read_bytes())
    context = engine.create_execution_context()
    images = np.random.default_rng(0).uniform(0, 255, (3, 3, CARD.input_size, CARD.input_size)).astype(np.float32)
    stream, source = _device_copy(rt, images)
    outputs = {name: rt.cudaMalloc(3 * 2 * 4)[1] for name in ("logits", "probs")}
    assert context.set_input_shape("images", images.shape)
    for name, address in {"images": source, **outputs}.items():
        context.set_tensor_address(name, address)
    assert context.execute_async_v3(stream)
    host = {name: np.empty((3, 2), dtype=np.float32) for name in outputs}
    for name, array in host.items():
        rt.cudaMemcpyAsync(array.ctypes.data, outputs[name], array.nbytes, rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)
    assert all(np.isnan(array).all() for array in host.values())
    rt.cudaStreamSynchronize(stream)
    for array, expected in zip((host["logits"], host["probs"]), trt_standin.expected_outputs(images, WEIGHT, BIAS)):
        np.testing.assert_allclose(array, expected, rtol=1e-6, atol=1e-6)
