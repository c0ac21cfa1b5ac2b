"""Several processes compute the gradients of one process (issue 19 item 15).

Two gloo ranks each run the SymNets objective (``step.Objective``, all losses of eq. 11, lambda > 0)
on their share of one global batch, through ``distributed.wrap`` (DistributedDataParallel); the
gradients they end with must equal those of the whole batch in one process. Every loss term is a
mean over its batch, so with equal shares the average of the shares' gradients is the whole
batch's gradient, exactly up to float rounding. BatchNorm is frozen (eval mode): in training mode it
normalises over each rank's share on the CPU (SyncBatchNorm is GPU-only), which is a difference of
the method, not of the all-reduce (``tests/cli/test_train_distributed.py`` covers whole runs).
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from symnets_deploy.train.checkpoint import build_model  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.distributed import World, wrap  # noqa: E402
from symnets_deploy.train.step import Objective  # noqa: E402

RANKS, BATCH, K, LAM = 2, 8, 3, 0.7
DEADLINE_S = 120  # a rank stuck in a collective fails the test instead of hanging it
#: float32 gradients summed in another order (per share, then across ranks): rounding only.
RTOL, ATOL = 1e-5, 1e-7
CONFIG = TrainConfig(source="s", target="t", data_root="unused", backbone="tiny", image_size=32, device="cpu")


def _global_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x_s, y_s, x_t of one iteration: the same tensors in every process."""
    g = torch.Generator().manual_seed(3)
    return torch.rand(BATCH, 3, 32, 32, generator=g) * 255, torch.randint(0, K, (BATCH,), generator=g), torch.rand(BATCH, 3, 32, 32, generator=g) * 255


def _model(initial: Path) -> torch.nn.Module:
    model = build_model(CONFIG, K)
    model.load_state_dict(torch.load(initial, weights_only=True))
    return model.eval()  # BatchNorm frozen: running statistics, the same in every process


def _gradients(objective: torch.nn.Module, model: torch.nn.Module, rows: slice) -> dict[str, torch.Tensor]:
    x_s, y_s, x_t = (t[rows] for t in _global_batch())
    total, _ = objective(x_s, y_s, x_t, LAM)
    total.backward()
    return {name: p.grad.detach().clone() for name, p in model.named_parameters()}


def _rank(rank: int, folder: Path) -> None:
    """One training process: joins the group, computes its share's gradients under DDP, saves them."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=RANKS, timeout=timedelta(seconds=DEADLINE_S))
    try:
        world = World(rank, RANKS)
        model = _model(folder / "initial.pt")
        objective = wrap(Objective(model, CONFIG), world, torch.device("cpu"))
        torch.save(_gradients(objective, model, world.shard(BATCH)), folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _start_ranks(folder: Path) -> None:
    """Fork the ranks: they inherit this process's imports. DistributedDataParallel imports
    torch._dynamo when first built (about 4 s), done here once rather than in every fresh process."""
    import torch._dynamo  # noqa: F401

    ranks = mp.start_processes(_rank, args=(folder,), nprocs=RANKS, join=False, start_method="fork")
    deadline = time.monotonic() + DEADLINE_S
    while not ranks.join(timeout=1):  # raises when a rank failed
        if time.monotonic() > deadline:
            for process in ranks.processes:
                process.kill()
            pytest.fail(f"the {RANKS} ranks did not finish within {DEADLINE_S} s")


def test_ranks_under_ddp_end_with_the_gradients_of_the_whole_batch(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save(build_model(CONFIG, K).state_dict(), tmp_path / "initial.pt")
    model = _model(tmp_path / "initial.pt")
    whole = _gradients(Objective(model, CONFIG), model, slice(None))
    assert all(g.abs().sum() > 0 for g in whole.values())  # every parameter gets a gradient (head and G)

    _start_ranks(tmp_path)

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(RANKS)]
    for rank, grads in enumerate(ranks):
        assert grads.keys() == whole.keys()
        for name, expected in whole.items():
            torch.testing.assert_close(grads[name], expected, rtol=RTOL, atol=ATOL, msg=f"rank {rank}, {name}")
    # The check can fail: one share's own gradients are far from the whole batch's.
    model = _model(tmp_path / "initial.pt")
    alone = _gradients(Objective(model, CONFIG), model, World(0, RANKS).shard(BATCH))
    assert any(not torch.allclose(alone[name], g, rtol=100 * RTOL, atol=100 * ATOL) for name, g in whole.items())
