"""The loss sums of the metrics records, kept by the step (inside the CUDA graph when captured), and
an iteration with no host synchronisation on a GPU (issue 19 item 3)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.train.checkpoint import build_model  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.placement import select_data_path  # noqa: E402
from symnets_deploy.train.schedules import annealed_lr, confusion_weight, progress  # noqa: E402
from symnets_deploy.train.step import WARMUP_ITERATIONS, EagerStep, GraphedStep, host_to_device, make_optimizer  # noqa: E402

K, ITERATIONS = 3, 8


def _config() -> TrainConfig:
    return TrainConfig(source="s", target="t", data_root="unused", backbone="tiny", image_size=32, device="cpu", iterations=ITERATIONS)


def _step(graphed: bool, device: torch.device, capture: bool = False):
    config, placement = _config(), select_data_path(device)
    torch.manual_seed(0)
    model = build_model(config, K).train().to(device, memory_format=placement.memory_format())
    optimizer = make_optimizer(model, config, fused=graphed)
    step = GraphedStep(model, optimizer, config, placement, capture=capture) if graphed else EagerStep(model, optimizer, config, placement)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(4, 3, 32, 32, generator=g) * 255, torch.randint(0, K, (4,), generator=g), torch.rand(4, 3, 32, 32, generator=g) * 255)
               for _ in range(ITERATIONS)]
    batches = [tuple(t.to(device) for t in batch) for batch in batches]  # uploaded before any timed or sync-checked iteration

    def run(it: int) -> dict[str, float]:
        p = progress(it, config.iterations)
        lrs = [annealed_lr(group["lr0"], p, config.lr_alpha, config.lr_beta) for group in optimizer.param_groups]
        return step(*batches[it], confusion_weight(p, config.lambda_gamma), lrs)

    return step, run


@pytest.mark.parametrize("graphed", [False, True], ids=["eager", "graph-body"])
def test_the_step_sums_each_iterations_loss_terms_and_restarts_after_each_take(graphed: bool) -> None:
    step, run = _step(graphed, torch.device("cpu"))
    for start, end in [(0, 3), (3, ITERATIONS)]:  # two metrics records' windows
        terms = [{k: float(v) for k, v in run(it).items()} for it in range(start, end)]
        taken = {k: float(v) for k, v in step.sums.take().items()}
        assert taken.keys() == terms[0].keys()
        for key, value in taken.items():
            assert value == pytest.approx(sum(t[key] for t in terms), rel=1e-6), (start, key)
    assert all(float(v) == 0 for v in step.sums.take().values())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="a CUDA graph and pinned memory need a CUDA GPU")
def test_a_captured_iteration_does_not_synchronise_the_host() -> None:
    """After the warm-up and the capture, an iteration (scalar upload, replay, loss sums) runs under
    torch's sync debug mode set to "error": any synchronising call (a copy from pageable memory
    without non_blocking, an ``.item()``) raises."""
    device = torch.device("cuda", 0)
    assert host_to_device([0.5, 0.1], device).is_pinned()
    step, run = _step(True, device, capture=True)
    eager, run_eager = _step(False, device)
    for it in range(WARMUP_ITERATIONS + 1):
        run(it), run_eager(it)
    assert step.graph is not None, step.fallback
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for it in range(WARMUP_ITERATIONS + 1, ITERATIONS):
            run(it)
        sums = step.sums.take()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for it in range(WARMUP_ITERATIONS + 1, ITERATIONS):
        run_eager(it)
    expected = eager.sums.take()
    # bf16 autocast in both; cuDNN may pick other algorithms inside the capture: rel 1e-2 on sums of 8 iterations.
    for key, value in expected.items():
        assert float(sums[key]) == pytest.approx(float(value), rel=1e-2, abs=1e-3), key
