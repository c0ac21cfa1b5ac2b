"""``symnets info``: what a model file is, and the environment (issue 11)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from symnets_deploy import __version__  # noqa: E402
from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.sidecar import sha256_file  # noqa: E402
from tests.cli_checks import error_line  # noqa: E402
from tests.runtime.conftest import tiny_onnx  # noqa: E402,F401  (fixture)
from tests.runtime.test_backend_trt import CARD, make_plan  # noqa: E402

runner = CliRunner()


def _info(*args: str) -> dict:
    result = runner.invoke(app, ["info", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_onnx_facts_come_from_its_card(tiny_onnx: Path, tiny_run: Path) -> None:  # noqa: F811
    facts = _info(str(tiny_onnx))
    card = json.loads((tiny_run / "config.json").read_text())
    assert (facts["format"], facts["precision"], facts["backbone"], facts["method"]) == ("onnx", "fp32", "tiny", "symnets")
    assert facts["classes"] == ["circle", "square", "triangle"] and facts["adaptation"].startswith("photos -> sketches")
    assert facts["input"].startswith(f"{card['image_size']}x{card['image_size']} RGB")
    assert facts["sha256"] == sha256_file(tiny_onnx) and "weights_sha256" in facts
    # the target's class folders measured it, for evaluation only: no "training" accuracy (issue 19 item 13)
    assert "training_accuracy" not in facts and facts["target_labels"] == "from class folders, used for evaluation only"
    assert set(facts["target_accuracy_percent"]) >= {"ct", "cs"}
    assert facts["target_accuracy_percent"]["ct"] == round(100 * json.loads((tiny_run / "summary.json").read_text())["target_acc_ct"], 2)
    text = runner.invoke(app, ["info", str(tiny_onnx)]).stdout
    assert "classes:" in text and "circle, square, triangle" in text and "precision:" in text and "target_accuracy_percent:" in text


def test_checkpoint_and_run_folder_facts(tiny_run: Path) -> None:
    pytest.importorskip("torch")
    facts = _info(str(tiny_run))
    assert facts["format"] == "checkpoint" and facts["file"].endswith("last.pt")
    assert facts["run"]["iteration"] == "4 of 4" and facts["classes"] == ["circle", "square", "triangle"]
    assert _info(str(tiny_run / "last.pt"))["sha256"] == facts["sha256"]


def test_plan_facts_come_from_its_sidecar(tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    facts = _info(str(plan))
    assert (facts["format"], facts["precision"], facts["classes"]) == ("tensorrt plan", "fp16", list(CARD.class_names))
    engine = facts["engine"]
    assert engine["tensorrt_version"] == "10.3.0" and "compute capability 9.0" in engine["built_on"]
    assert engine["batch_profile"] == {"min": 1, "opt": 8, "max": 32} and engine["plan_matches_sidecar"] is True
    plan.write_bytes(b"replaced")
    assert _info(str(plan))["engine"]["plan_matches_sidecar"] is False


def test_environment_without_a_file() -> None:
    facts = _info()
    assert facts["symnets-deploy"] == __version__ and facts["python"].count(".") == 2
    assert facts["onnxruntime"] and "CPUExecutionProvider" in facts["onnxruntime_providers"]
    assert "torch" in facts


@pytest.mark.parametrize("name, code, words", [("missing.onnx", 2, "no such file"), ("notes.txt", 2, "not a model file")])
def test_bad_files_are_one_line(tmp_path: Path, name: str, code: int, words: str) -> None:
    if name == "notes.txt":
        (tmp_path / name).write_text("hello")
    assert words in error_line(runner.invoke(app, ["info", str(tmp_path / name)]), code)


def test_card_that_disagrees_with_the_graph_is_a_warning(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
    # Issue 18 item 14: the graph outputs 3 classes at 32x32; this card says 5 classes at 40x40.
    from tests.cli.test_untrusted_cards import with_card

    model = with_card(tiny_onnx, tmp_path / "five.onnx", class_names=list("abcde"), input_size=40, resize_size=46)
    facts = _info(str(model))
    assert facts["num_classes"] == 5
    assert "the model outputs 3 classes but its card lists 5" in facts["warning"]
    assert "the model takes 32x32 images but its card says 40x40" in facts["warning"]
    text = runner.invoke(app, ["info", str(model)]).stdout
    warnings = [line for line in text.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].endswith(facts["warning"])
    # predict refuses the same file with one line, exit 5.
    line = error_line(runner.invoke(app, ["predict", "-e", str(model), str(shapes_root / "sketches")]), 5)
    assert str(model) in line and "card says 40x40" in line
    assert "warning" not in _info(str(tiny_onnx))


def test_card_metrics_of_the_wrong_shape_are_shown_not_a_traceback(tiny_onnx: Path, tmp_path: Path) -> None:  # noqa: F811
    from tests.cli.test_untrusted_cards import with_card

    model = with_card(tiny_onnx, tmp_path / "odd.onnx", metrics={"label_free": "source_val_acc_ct", "target_acc_ct": "high"})
    facts = _info(str(model))
    assert facts["label_free"] is None and facts["target_accuracy_percent"] is None
