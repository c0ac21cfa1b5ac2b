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
