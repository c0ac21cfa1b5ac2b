"""Data-path selection: GPU-resident on CUDA devices, the CPU path otherwise (no GPU needed)."""

from __future__ import annotations

import torch

from symnets_deploy.train.placement import select_data_path
from symnets_deploy.train.trainer import resolve_device


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


def test_crops_made_in_host_memory_then_moved_equal_crops_made_where_the_data_lives():
    """The host path crops before the upload, the resident path after it: the same batch either way."""
    from symnets_deploy.train import data as D

    images = torch.randint(0, 255, (6, 3, 40, 36), dtype=torch.uint8)
    sizes = torch.tensor([[40, 36], [38, 36], [40, 34], [36, 36], [40, 36], [39, 35]])
    index = torch.tensor([5, 0, 3, 3])
    for part in (slice(None), slice(2, 4)):
        host = D.random_crop_flip(images, sizes, index, 32, D.augmentation_generator(1, 9, 0), part).to("cpu", non_blocking=True)
        resident = D.random_crop_flip(images.to("cpu"), sizes, index, 32, D.augmentation_generator(1, 9, 0), part)
        assert torch.equal(host, resident) and host.shape == (len(index[part]), 3, 32, 32)
