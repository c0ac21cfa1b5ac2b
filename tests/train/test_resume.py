"""Exact resume: an interrupted and continued run ends bit-identical to a straight one."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.errors import ArtifactError  # noqa: E402
from symnets_deploy.train.checkpoint import build_model, load_checkpoint, save_checkpoint  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.step import load_optimizer_state, make_optimizer  # noqa: E402
from symnets_deploy.train.trainer import Reporter, train  # noqa: E402

ITERATIONS = 10
LOSS_KEYS = ("cls_total", "feat_total", "cls_source_task", "feat_entropy")




def _config(data_root: Path, out: Path) -> TrainConfig:
    return TrainConfig(
        source="photos", target="sketches", data_root=str(data_root), backbone="tiny", iterations=ITERATIONS,
        batch_size=4, image_size=32, device="cpu", seed=3, out=str(out), log_every=1, eval_every=4, threads=1,
    )


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _assert_same_tensors(a, b, where: str = "") -> None:
    """Recursively compare nested dicts/lists of tensors and plain values exactly."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _assert_same_tensors(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same_tensors(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


@pytest.fixture(scope="module")
def runs(shapes_root, tmp_path_factory):
    """A straight run and two interrupted ones that should end identical to it.

    ``simple``: stopped at 5, a torn metrics line appended (a kill in the middle of a write),
    resumed to the end. ``rollback``: stopped at 3, continued to 5,
    then rolled back to the checkpoint of 3 (as if the process died after logging iterations
    4-5 but before their checkpoint landed) and finished.
    """
    straight = tmp_path_factory.mktemp("straight")
    train(_config(shapes_root, straight))

    simple = tmp_path_factory.mktemp("simple")
    config = _config(shapes_root, simple)
    stopped = train(config, stop_at=5)
    with (simple / "metrics.jsonl").open("a") as log:
        log.write('{"iteration": 6, "cls_tot')
    train(config, resume=True)

    rollback = tmp_path_factory.mktemp("rollback")
    config = _config(shapes_root, rollback)
    train(config, stop_at=3)
    shutil.copy(rollback / "last.pt", rollback / "saved_at_3.pt")
    train(config, resume=True, stop_at=5)
    shutil.copy(rollback / "saved_at_3.pt", rollback / "last.pt")
    train(config, resume=True)
    return {"straight": straight, "simple": simple, "rollback": rollback, "stopped": stopped}


@pytest.fixture(params=["simple", "rollback"])
def resumed(request, runs) -> Path:
    return runs[request.param]


def test_weights_and_optimizer_identical(runs, resumed):
    a = torch.load(runs["straight"] / "last.pt", map_location="cpu", weights_only=True)
    b = torch.load(resumed / "last.pt", map_location="cpu", weights_only=True)
    assert a["iteration"] == b["iteration"] == ITERATIONS
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    _assert_same_tensors(a["optimizer"], b["optimizer"], "optimizer")
    # Momentum buffers exist for every parameter (the optimizer state was really carried over).
    assert len(a["optimizer"]["state"]) == sum(len(g["params"]) for g in a["optimizer"]["param_groups"])
    _assert_same_tensors(a["rng"], b["rng"], "rng")
    assert len(a["rng"]["ranks"]) == 1 and torch.equal(a["rng"]["torch"], a["rng"]["ranks"][0]["torch"])
    assert a["card"]["metrics"] == b["card"]["metrics"]


def test_training_actually_moved_the_weights(runs):
    final = torch.load(runs["straight"] / "last.pt", map_location="cpu", weights_only=True)
    at_3 = torch.load(runs["rollback"] / "saved_at_3.pt", map_location="cpu", weights_only=True)
    assert at_3["iteration"] == 3
    floats = [k for k in final["model"] if final["model"][k].is_floating_point()]
    assert any(not torch.equal(final["model"][k], at_3["model"][k]) for k in floats)


def test_checkpoint_is_weights_only_loadable(resumed):
    ckpt = torch.load(resumed / "last.pt", map_location="cpu", weights_only=True)
    assert {"model", "optimizer", "iteration", "rng", "card", "config"} <= set(ckpt)
    assert ckpt["config"]["iterations"] == ITERATIONS
    assert ckpt["card"]["class_names"] == ["circle", "square", "triangle"]
    assert load_checkpoint(resumed)["iteration"] == ITERATIONS  # a run folder means its last.pt
    assert not list(resumed.glob(".last.pt.*"))  # no temp files left behind


def test_metrics_have_no_duplicate_iterations_and_match_the_straight_run(runs, resumed):
    a, b = _records(runs["straight"]), _records(resumed)
    steps_a = [r for r in a if "lr_head" in r]
    steps_b = [r for r in b if "lr_head" in r]
    assert [r["iteration"] for r in steps_b] == list(range(1, ITERATIONS + 1))
    assert [r["iteration"] for r in steps_a] == list(range(1, ITERATIONS + 1))
    for ra, rb in zip(steps_a, steps_b):
        for key in LOSS_KEYS + ("lambda", "lr_head", "lr_backbone"):
            assert ra[key] == rb[key], (ra["iteration"], key)
    evals_a = [r for r in a if "acc_ct" in r]
    evals_b = [r for r in b if "acc_ct" in r]
    assert [r["iteration"] for r in evals_b] == [4, 8, ITERATIONS]
    assert evals_a == evals_b


def test_stop_at_reports_the_latest_evaluation(runs):
    # Stopped at 5 with eval_every=4: the result carries the evaluation of iteration 4.
    stopped = runs["stopped"]
    assert stopped.iterations == ITERATIONS  # the configured length, not the stop point
    (at_4,) = [r for r in _records(runs["simple"]) if "acc_ct" in r and r["iteration"] == 4]
    assert (stopped.target_acc_ct, stopped.target_acc_cs) == (at_4["acc_ct"], at_4["acc_cs"])


def test_resume_without_checkpoint_is_an_artifact_error(shapes_root, tmp_path):
    with pytest.raises(ArtifactError, match="last.pt"):
        train(_config(shapes_root, tmp_path / "empty"), resume=True)


class _Warnings(Reporter):
    def __init__(self) -> None:
        self.warnings: list[str] = []

    def warn(self, text: str) -> None:
        self.warnings.append(text)


@pytest.fixture(scope="module")
def stopped_at_2(shapes_root, tmp_path_factory) -> Path:
    """A run stopped (with its checkpoint) at iteration 2 of ITERATIONS, to be copied and altered."""
    run = tmp_path_factory.mktemp("stopped") / "run"
    train(replace(_config(shapes_root, run), eval_every=0), stop_at=2)
    return run


def _resume_altered(stopped: Path, data_root: Path, tmp_path: Path, alter) -> tuple[Path, list[str]]:
    """Resume a copy of ``stopped`` whose last.pt ``alter`` changed; the finished run and its warnings."""
    run = tmp_path / "run"
    shutil.copytree(stopped, run)
    ckpt = load_checkpoint(run)
    alter(ckpt)
    save_checkpoint(run / "last.pt", {k: v for k, v in ckpt.items() if k != "format"})
    reporter = _Warnings()
    train(replace(_config(data_root, run), eval_every=0), reporter, resume=True)
    return run, reporter.warnings


def test_resume_keeps_the_sgd_implementation_this_run_chose(stopped_at_2, shapes_root, tmp_path) -> None:
    """A checkpoint's param groups carry the writer's fused/foreach flags (issue 19 item 1): a
    CUDA-graph run's (fused) resumed on the CPU must go on with the CPU's choice, as a
    ``--nproc`` run's (foreach) resumed in one CUDA process must go on with the fused SGD."""
    def written_by_a_graphed_run(ckpt) -> None:
        for group in ckpt["optimizer"]["param_groups"]:
            group.update(fused=True, foreach=None)

    run, _ = _resume_altered(stopped_at_2, shapes_root, tmp_path, written_by_a_graphed_run)
    groups = load_checkpoint(run)["optimizer"]["param_groups"]
    assert [(g["fused"], g["foreach"]) for g in groups] == [(None, None)] * 2


@pytest.mark.parametrize("chosen, saved", [(True, False), (False, True)])
def test_loading_an_optimizer_state_keeps_the_implementation_flags(chosen: bool, saved: bool) -> None:
    config = _config(Path("unused"), Path("unused"))
    model = build_model(config, 3)
    state = make_optimizer(model, config, fused=saved).state_dict()
    for group in state["param_groups"]:
        group["foreach"] = None if saved else True  # as torch's default picks on CUDA without fused
        group["lr"] = 0.123
    optimizer = make_optimizer(model, config, fused=chosen)
    load_optimizer_state(optimizer, state)
    assert [(g["fused"], g["foreach"]) for g in optimizer.param_groups] == [(True if chosen else None, None)] * 2
    assert [g["lr"] for g in optimizer.param_groups] == [0.123] * 2  # the state itself is loaded


def _gpu_states(n: int) -> list[torch.Tensor]:
    return [torch.arange(16, dtype=torch.uint8) + i for i in range(n)]  # a CUDA generator state: seed and offset


@pytest.mark.parametrize("rng", [
    pytest.param(lambda cpu: {"torch": cpu, "cuda": _gpu_states(2)}, id="format-1-two-gpus"),
    pytest.param(lambda cpu: {"ranks": [{"torch": cpu, "cuda": s} for s in _gpu_states(2)], "torch": cpu}, id="two-ranks-on-gpus"),
])
def test_generator_states_that_do_not_fit_are_restored_in_part_with_one_warning(stopped_at_2, shapes_root, tmp_path, rng) -> None:
    """Saved by two GPU processes (or one process seeing two GPUs), resumed in one CPU process
    (issue 19 item 2): no IndexError, the CPU generator restored, and one warning that the run is
    no longer exact."""
    def from_two_gpus(ckpt) -> None:
        ckpt["rng"] = rng(ckpt["rng"]["torch"])

    run, warnings = _resume_altered(stopped_at_2, shapes_root, tmp_path, from_two_gpus)
    assert load_checkpoint(run)["iteration"] == ITERATIONS
    about_generators = [w for w in warnings if "random generators" in w]  # (the others: the tiny run's own scores)
    assert len(about_generators) == 1 and "not bit for bit" in about_generators[0] and "GPU generator states" in about_generators[0], warnings

