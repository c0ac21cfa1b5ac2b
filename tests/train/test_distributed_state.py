"""What each training process keeps and leaves, tested in real 2-process gloo groups (issue 19 items 2, 4, 8, 9).

The processes are started with ``torch.multiprocessing.spawn`` and join the group the way torchrun's
environment describes it (``World.from_env``); each runs its checks itself, and a failed check in
either fails the test with that process's traceback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")

from symnets_deploy.errors import TrainingDiverged  # noqa: E402
from symnets_deploy.train.checkpoint import load_checkpoint, restore_rng, rng_record, rng_state, save_checkpoint  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.distributed import COLLECTIVE_TIMEOUT, World  # noqa: E402

from .memory_maps import backing_file  # noqa: E402

SIZE = 2
CPU = torch.device("cpu")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(check, *args) -> None:
    """Run ``check(*args)`` in SIZE processes of one gloo group (a rank's failure fails the test)."""
    import torch.multiprocessing as mp

    mp.spawn(_as_rank, args=(_free_port(), check, args), nprocs=SIZE, join=True)


def _as_rank(rank: int, port: int, check, args) -> None:
    os.environ.update(WORLD_SIZE=str(SIZE), RANK=str(rank), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    check(*args)


def _each_rank_keeps_its_own_generators(folder: Path) -> None:
    world = World.from_env("cpu")
    rank = world.rank
    # Item 9: the group waits COLLECTIVE_TIMEOUT (not the backend's default) for a rank busy alone.
    assert dist.group.WORLD._get_backend(CPU).options._timeout == COLLECTIVE_TIMEOUT
    torch.manual_seed(100 + rank)
    torch.rand(rank + 1)  # the ranks' generators are in different states
    states = world.gather(rng_state(CPU))
    expected = torch.rand(8)  # what this rank draws next
    if world.is_main:
        assert len(states) == SIZE and not torch.equal(states[0]["torch"], states[1]["torch"])
        save_checkpoint(folder / "last.pt", {"rng": rng_record(states)})
    else:
        assert states is None
    world.barrier()
    saved = load_checkpoint(folder / "last.pt")["rng"]
    assert len(saved["ranks"]) == SIZE
    torch.manual_seed(0)
    assert restore_rng(saved, rank, SIZE, CPU) == ""
    assert torch.equal(torch.rand(8), expected), f"rank {rank} did not get its own generator back"
    world.close()


def test_each_rank_saves_and_restores_its_own_generator_state(tmp_path: Path) -> None:
    _spawn(_each_rank_keeps_its_own_generators, tmp_path)


def _a_diverged_run_leaves_the_group(data_root: Path, out: Path) -> None:
    from symnets_deploy.train.trainer import train

    config = TrainConfig(source="photos", target="sketches", data_root=str(data_root), backbone="tiny", iterations=6, batch_size=4,
                         image_size=32, device="cpu", out=str(out), log_every=2, lr=1e12, threads=1, report=False, cache=False)
    with pytest.raises(TrainingDiverged):
        train(config)
    assert not dist.is_initialized(), "the process group is still open after the exception"


def test_an_exception_in_training_leaves_the_process_group(shapes_root: Path, tmp_path: Path) -> None:
    """Every rank raises TrainingDiverged at the same record; each must leave the group on the way out
    (a group left open is torn down by destructors at exit, which abort the process with NCCL)."""
    _spawn(_a_diverged_run_leaves_the_group, shapes_root, tmp_path / "run")


def _the_ranks_share_one_decoded_copy(data_root: Path, cache_dir, run_id: str) -> None:
    from types import SimpleNamespace

    from symnets_deploy.train.data import decode_domain, scan_domain
    from symnets_deploy.train.trainer import _decode_once_per_machine

    world = World.from_env("cpu")
    source, target = scan_domain(data_root, "photos"), scan_domain(data_root, "sketches")
    config = TrainConfig(source="photos", target="sketches", data_root=str(data_root), backbone="tiny", device="cpu", threads=1)
    run = SimpleNamespace(config=config, world=world, train_source=source, target=target, run_id=run_id)
    src, tgt = _decode_once_per_machine(run, 37, cache_dir, lambda text: None)
    files = world.gather([backing_file(src.images), backing_file(tgt.images)])
    if world.is_main:
        for domain in (0, 1):
            mapped = {rank[domain] for rank in files}
            assert len(mapped) == 1 and None not in mapped, f"the ranks do not read one file: {files}"
    assert torch.equal(src.images, decode_domain(source, 37).images) and torch.equal(tgt.images, decode_domain(target, 37).images)
    world.close()


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "no-cache"])
def test_the_processes_of_a_machine_read_one_decoded_copy(shapes_root: Path, tmp_path: Path, cache: bool) -> None:
    """Both ranks map the same file (one copy in memory, not one each); without the cache the file is
    a temporary one that is gone once both have mapped it."""
    import tempfile

    run_id = tmp_path.name
    _spawn(_the_ranks_share_one_decoded_copy, shapes_root, tmp_path / "cache" if cache else None, run_id)
    assert (len(list((tmp_path / "cache").glob("*.npz"))) == 2) if cache else not (tmp_path / "cache").exists()
    assert not list(Path(tempfile.gettempdir()).glob(f"symnets-decoded-{run_id}*"))
