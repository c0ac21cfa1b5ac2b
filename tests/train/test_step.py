"""The graphed training step computes what the eager one does (issue 10).

The capture itself needs a CUDA GPU (``bench/train_throughput.py`` compares the two there); on the
CPU, ``GraphedStep`` runs the body it would capture, through the same static buffers, device
scalars for lambda and the learning rates, and the fused SGD, and must match ``EagerStep``
iteration by iteration while the schedules move.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.train.checkpoint import build_model  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.placement import select_data_path  # noqa: E402
from symnets_deploy.train.schedules import annealed_lr, confusion_weight, progress  # noqa: E402
from symnets_deploy.train.step import EagerStep, GraphedStep, make_optimizer, make_step, optimizer_state  # noqa: E402

K, ITERATIONS = 3, 6
CPU = select_data_path(torch.device("cpu"))


def _config(**kw) -> TrainConfig:
    return TrainConfig(source="s", target="t", data_root="unused", backbone="tiny", image_size=32, device="cpu", iterations=ITERATIONS, **kw)


def _batches(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    for _ in range(ITERATIONS):
        yield torch.rand(4, 3, 32, 32, generator=g) * 255, torch.randint(0, K, (4,), generator=g), torch.rand(4, 3, 32, 32, generator=g) * 255


def _run(config: TrainConfig, graphed: bool, capture: bool = False):
    torch.manual_seed(0)
    model = build_model(config, K).train()
    optimizer = make_optimizer(model, config, fused=graphed)
    step = GraphedStep(model, optimizer, config, CPU, capture=capture) if graphed else EagerStep(model, optimizer, config, CPU)
    losses = []
    for it, (x_s, y_s, x_t) in enumerate(_batches()):
        p = progress(it, config.iterations)
        lrs = [annealed_lr(g["lr0"], p, config.lr_alpha, config.lr_beta) for g in optimizer.param_groups]
        terms = step(x_s, y_s, x_t if config.method == "symnets" else None, confusion_weight(p, config.lambda_gamma), lrs)
        losses.append({k: float(v) for k, v in terms.items()})
    return model, optimizer, losses, step


@pytest.mark.parametrize("method", ["symnets", "source-only"])
def test_graphed_body_matches_the_eager_step_while_the_schedules_move(method: str) -> None:
    config = _config(method=method)
    eager_model, eager_opt, eager_losses, _ = _run(config, graphed=False)
    graph_model, graph_opt, graph_losses, _ = _run(config, graphed=True)
    assert [sorted(x) for x in graph_losses] == [sorted(x) for x in eager_losses]
    for a, b in zip(eager_losses, graph_losses):
        assert all(b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6) for k in a), (a, b)
    # lambda rises from 0: the feature loss's weighted part must reach the update, not only the first term.
    if method == "symnets":
        assert eager_losses[-1]["feat_total"] != pytest.approx(eager_losses[-1]["feat_category_confusion"], abs=1e-6)
    for (name, a), b in zip(eager_model.state_dict().items(), graph_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    moved = [not torch.equal(p, q) for p, q in zip(build_model(config, K).state_dict().values(), eager_model.state_dict().values())]
    assert any(moved)
    # Momentum buffers agree too, and the saved learning rates are plain floats, equal in both.
    for (ka, sa), (kb, sb) in zip(eager_opt.state_dict()["state"].items(), graph_opt.state_dict()["state"].items()):
        torch.testing.assert_close(sb["momentum_buffer"], sa["momentum_buffer"], rtol=1e-5, atol=1e-6)
    saved = [optimizer_state(o)["param_groups"] for o in (eager_opt, graph_opt)]
    assert all(isinstance(g["lr"], float) for groups in saved for g in groups)
    assert [g["lr"] for g in saved[1]] == pytest.approx([g["lr"] for g in saved[0]], rel=1e-6)


def test_the_cpu_path_stays_eager_and_cuda_graphs_can_be_switched_off() -> None:
    model = build_model(_config(), K)
    assert isinstance(make_step(model, make_optimizer(model, _config()), _config(), CPU), EagerStep)
    cuda = select_data_path(torch.device("cuda"))  # a description only: nothing is allocated
    assert isinstance(make_step(model, make_optimizer(model, _config()), _config(cuda_graph=False), cuda), EagerStep)
    assert isinstance(make_step(model, make_optimizer(model, _config()), _config(), cuda), GraphedStep)


def test_a_failed_capture_falls_back_to_eager_once_and_loses_no_iteration() -> None:
    """On this CPU the capture itself fails for real (no CUDA driver): the iteration reruns eagerly."""
    config = _config()
    eager_model, _, eager_losses, _ = _run(config, graphed=False)
    with pytest.warns(RuntimeWarning, match="CUDA graph capture failed") as caught:
        graph_model, _, graph_losses, step = _run(config, graphed=True, capture=True)
    assert len(caught) == 1 and step.fallback and step.graph is None and step.calls == ITERATIONS
    assert len(graph_losses) == ITERATIONS
    for a, b in zip(eager_losses, graph_losses):
        assert all(b[k] == pytest.approx(a[k], rel=1e-5, abs=1e-6) for k in a), (a, b)
    for a, b in zip(eager_model.state_dict().values(), graph_model.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
