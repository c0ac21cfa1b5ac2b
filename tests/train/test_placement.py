"""Data-path selection: GPU-resident on CUDA devices, the CPU path otherwise (no GPU needed); the crops
and the one-ahead upload of the host path."""

from __future__ import annotations

from typing import Optional

import pytest
import torch

from symnets_deploy.train.data import augmentation_generator, random_crop_flip
from symnets_deploy.train.placement import UploadAhead, select_data_path
from symnets_deploy.train.trainer import resolve_device

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cuda_device_selects_gpu_resident_path():
    path = select_data_path(torch.device("cuda", 0))
    assert path.name == "gpu-resident"
    assert path.device == torch.device("cuda", 0)
    assert path.channels_last and path.memory_format() is torch.channels_last
    assert path.autocast_dtype is torch.bfloat16


def test_cpu_device_selects_cpu_path_in_fp32():
    path = select_data_path(torch.device("cpu"))
    assert path.name == "cpu"
    assert not path.channels_last and path.memory_format() is torch.contiguous_format
    assert path.autocast_dtype is None
    x = torch.ones(2, 2)
    with path.autocast():
        assert (x @ x).dtype is torch.float32


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert select_data_path(resolve_device("auto")).name == ("gpu-resident" if expected == "cuda" else "cpu")


def test_decoded_domains_leave_the_gpu_when_they_exceed_its_budget():
    from symnets_deploy.enums import DataOn
    from symnets_deploy.train.placement import GPU_DATA_BUDGET, data_location

    cuda, free = torch.device("cuda", 0), 10 * 2**30  # a description only: nothing is allocated
    assert data_location(cuda, int(GPU_DATA_BUDGET * free), free_bytes=free) is DataOn.gpu
    assert data_location(cuda, int(GPU_DATA_BUDGET * free) + 1, free_bytes=free) is DataOn.host
    assert data_location(cuda, 1, "host", free_bytes=free) is DataOn.host  # asked for
    assert data_location(cuda, 10 * free, "gpu", free_bytes=free) is DataOn.gpu
    assert data_location(torch.device("cpu"), 10 * free, "host") is DataOn.gpu  # one memory: crops made where the data is


def _crops_by_hand(images: torch.Tensor, sizes: torch.Tensor, index: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """The crops one image at a time with plain slicing: the draws as ``random_crop_flip`` documents them
    (one uniform per row for top, left and the flip), none of its gather."""
    u = torch.rand((3, len(index)), generator=generator)
    out = []
    for row, i in enumerate(index.tolist()):
        h, w = sizes[i].tolist()
        top, left = int(u[0, row] * (h - crop + 1)), int(u[1, row] * (w - crop + 1))
        window = images[i, :, top:top + crop, left:left + crop]
        out.append(window.flip(-1) if u[2, row] < 0.5 else window)
    return torch.stack(out)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])])
def test_crops_equal_crops_cut_by_hand_for_the_whole_batch_and_each_share(device: str) -> None:
    """The host path crops on the CPU, the resident path where the data lives: both must equal a
    computation of their own, here one image at a time. Padding (images are top-left aligned in a
    [Hmax, Wmax] block) holds 255, which no image pixel has: no crop may reach into it."""
    images = torch.full((6, 3, 40, 36), 255, dtype=torch.uint8)
    sizes = torch.tensor([[40, 36], [38, 36], [40, 34], [36, 36], [40, 36], [39, 35]])
    for i, (h, w) in enumerate(sizes.tolist()):
        images[i, :, :h, :w] = torch.randint(0, 255, (3, h, w), generator=torch.Generator().manual_seed(i), dtype=torch.uint8)
    index = torch.tensor([5, 0, 3, 3, 1, 2, 5, 4])
    expected = _crops_by_hand(images, sizes, index, 32, augmentation_generator(1, 9, 0))
    assert expected.shape == (8, 3, 32, 32) and (expected < 255).all()
    flips = torch.rand((3, 8), generator=augmentation_generator(1, 9, 0))[2] < 0.5
    assert flips.any() and not flips.all()  # both branches are exercised
    for part in (slice(None), slice(2, 4), slice(6, 8)):
        got = random_crop_flip(images.to(device), sizes, index, 32, augmentation_generator(1, 9, 0), part)
        assert got.device.type == device and torch.equal(got.cpu(), expected[part])


def _batch(iteration: int) -> list[Optional[torch.Tensor]]:
    """An iteration's CPU tensors, a function of the iteration only (source crops, no target, labels)."""
    g = torch.Generator().manual_seed(iteration)
    return [torch.randint(0, 255, (2, 3, 4, 4), generator=g, dtype=torch.uint8), None, torch.full((2,), iteration)]


@pytest.mark.parametrize("device", [
    "cpu",
    pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda]),
])
def test_upload_ahead_gives_each_batch_in_order_one_iteration_ahead_and_stops_at_the_end(device: str) -> None:
    made: list[int] = []

    def make(iteration: int) -> list[Optional[torch.Tensor]]:
        made.append(iteration)
        return _batch(iteration)

    first, last = 2, 5  # a resumed run starts mid-way
    ahead = UploadAhead(make, torch.device(device), last)
    for iteration in range(first, last):
        got = ahead.get(iteration)
        # This iteration's batch, and the next one made while this one computes; never further, never twice.
        assert made == list(range(first, min(iteration + 2, last))), (iteration, made)
        assert got[1] is None and len(got) == 3
        for tensor, expected in zip(got, _batch(iteration)):
            if expected is not None:
                assert tensor.device.type == device and torch.equal(tensor.cpu(), expected), iteration
    assert made == list(range(first, last)) and not ahead.pending  # nothing made past the end, nothing left behind
