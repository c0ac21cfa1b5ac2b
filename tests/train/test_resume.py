"""Exact resume: an interrupted and continued run ends bit-identical to a straight one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.errors import ArtifactError  # noqa: E402
from symnets_deploy.train.checkpoint import load_checkpoint  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.trainer import train  # noqa: E402

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
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
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
