"""``symnets predict`` through Typer's CliRunner: outputs, exit codes and one-line errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnxruntime")

from symnets_deploy._optional import is_available  # noqa: E402
from symnets_deploy.card import ONNX_CARD_KEY  # noqa: E402
from symnets_deploy.cli.main import app  # noqa: E402
from symnets_deploy.predictor import FIELDS  # noqa: E402

from tests.runtime.conftest import BAD, GOOD, mixed_folder, tiny_onnx  # noqa: E402,F401  (fixtures)
from tests.runtime.test_backend_trt import make_plan  # noqa: E402

from tests.cli_checks import error_line  # noqa: E402

runner = CliRunner()


def invoke(*args: str, input: str | None = None):
    return runner.invoke(app, ["predict", *map(str, args)], input=input)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_folder_to_csv_one_row_per_image(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    result = invoke(shapes_root, "--engine", tiny_onnx, "--output", out, "--top-k", 2, "--batch-size", 4)
    assert result.exit_code == 0, result.output
    rows = read_csv(out)
    images = sorted(p for p in shapes_root.rglob("*") if p.suffix in (".jpg", ".png"))
    assert [r["path"] for r in rows] == [str(p) for p in images]
    assert all(r["status"] == "ok" and len(json.loads(r["topk_labels"])) == 2 for r in rows)
    probs = [json.loads(r["topk_probs"]) for r in rows]
    assert all(p == sorted(p, reverse=True) and sum(p) <= 1 + 1e-5 for p in probs)
    summary = result.stderr.strip().splitlines()[-1]
    assert summary.startswith(f"{len(images)} images, 0 failed, ") and "images/s" in summary


def test_mixed_folder_exit_code_3_and_a_complete_jsonl(tiny_onnx: Path, mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    result = invoke(mixed_folder, "--engine", tiny_onnx, "--output", out)
    assert result.exit_code == 3, result.output
    summary, error = result.stderr.strip().splitlines()[-2:]
    assert summary.startswith(f"{len(GOOD) + len(BAD)} images, {len(BAD)} failed, ")
    assert error == f"error: {len(BAD)} of {len(GOOD) + len(BAD)} images could not be predicted (rows with status=error)"
    assert "Traceback" not in result.output
    records = {Path(r["path"]).relative_to(mixed_folder).as_posix(): r for r in map(json.loads, out.read_text().splitlines())}
    assert sorted(records) == sorted([*GOOD, *BAD])
    assert {n for n, r in records.items() if r["status"] == "error"} == set(BAD)
    assert all(records[n]["error"] and records[n]["label"] is None for n in BAD)
    assert all(list(r) == list(FIELDS) for r in records.values())


def test_stdout_output_and_paths_from_stdin(tiny_onnx: Path, shapes_root: Path) -> None:
    images = sorted(shapes_root.rglob("*.png"))[:3]
    result = invoke("-", "--engine", tiny_onnx, "--format", "jsonl", input="\n".join(map(str, images)) + "\n")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == [str(p) for p in images]
    csv_result = invoke(images[0], "--engine", tiny_onnx, "--no-recursive")
    assert list(csv.DictReader(io.StringIO(csv_result.stdout)))[0]["path"] == str(images[0])


def test_webcam_folder(tiny_onnx: Path, office_root: Path, tmp_path: Path) -> None:
    webcam = office_root / "webcam"
    out = tmp_path / "preds.csv"
    result = invoke(webcam, "--engine", tiny_onnx, "--output", out, "--batch-size", 32)
    assert result.exit_code == 0, result.output
    assert len(read_csv(out)) == len(list(webcam.rglob("*.jpg")))


def test_usage_errors_exit_2(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    assert "engine file not found" in error_line(invoke(shapes_root, "--engine", tmp_path / "missing.onnx"), 2)
    assert "no such file or folder" in error_line(invoke(tmp_path / "nope", "--engine", tiny_onnx), 2)
    assert "--format" in error_line(invoke(shapes_root, "--engine", tiny_onnx, "--output", tmp_path / "p.txt"), 2)
    assert invoke(shapes_root, "--engine", tiny_onnx, "--top-k", 0).exit_code == 2
    assert not (tmp_path / "p.txt").exists()


def test_an_engine_that_is_a_run_folder_or_a_checkpoint_says_what_to_give(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:  # noqa: F811
    """What a user has after training is a run folder and its last.pt: the message says what --engine wants (issue 19 item 12)."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.pt").write_bytes(b"a checkpoint")
    line = error_line(invoke(shapes_root, "--engine", run), 2)
    assert line == (f"error: {run}: is a run folder without an exported model; "
                    f"run 'symnets export --checkpoint {run}' first (it writes {run / 'model.onnx'})")
    line = error_line(invoke(shapes_root, "--engine", run / "last.pt"), 2)
    assert f"{run / 'last.pt'}: is a training checkpoint, not an exported model" in line and f"symnets export --checkpoint {run / 'last.pt'}" in line
    for name in ("model.onnx", "model.fp16.onnx"):
        (run / name).write_bytes(tiny_onnx.read_bytes())
    line = error_line(invoke(shapes_root, "--engine", run), 2)
    assert line == f"error: {run}: is a folder, not a model file; it holds model.onnx, model.fp16.onnx: give one of them, e.g. {run / 'model.onnx'}"
    assert "not found" not in error_line(invoke(shapes_root, "--engine", tmp_path), 2)


def test_onnx_without_card_exits_5(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(tiny_onnx))
    keep = [p for p in model.metadata_props if p.key != ONNX_CARD_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    out = tmp_path / "preds.csv"
    assert "no model card" in error_line(invoke(shapes_root, "--engine", bare, "--output", out), 5)
    assert not out.exists()


def test_plan_with_missing_or_mismatched_sidecar_exits_5(shapes_root: Path, tmp_path: Path) -> None:
    plan = make_plan(tmp_path)
    plan.write_bytes(b"a different engine")
    assert "sha256" in error_line(invoke(shapes_root, "--engine", plan), 5)
    Path(str(plan) + ".json").unlink()
    assert "sidecar not found" in error_line(invoke(shapes_root, "--engine", plan), 5)


@pytest.mark.skipif(is_available("tensorrt"), reason="TensorRT is installed")
def test_valid_plan_without_tensorrt_exits_4(shapes_root: Path, tmp_path: Path) -> None:
    assert "symnets-deploy[trt]" in error_line(invoke(shapes_root, "--engine", make_plan(tmp_path)), 4)


def test_file_names_that_are_not_utf8_get_one_row_each(tiny_onnx: Path, tmp_path: Path) -> None:
    """Issue 9, case 4: one such name used to end the whole run with a UnicodeEncodeError traceback."""
    import json
    import os

    from PIL import Image

    folder = tmp_path / "w"
    folder.mkdir()
    raw = os.fsencode(folder) + b"/bad\xff.png"
    Image.new("RGB", (8, 8)).save(raw)
    Image.new("RGB", (8, 8)).save(folder / "good.png")
    (tmp_path / "list.txt").write_bytes(b"w/bad\xff.png\nw/good.png\n")
    for inputs, stdin in (([str(folder)], None), ([str(tmp_path / "list.txt")], None), (["-"], raw + b"\n" + os.fsencode(folder / "good.png") + b"\n")):
        csv_out, jsonl_out = tmp_path / "p.csv", tmp_path / "p.jsonl"
        for out in (csv_out, jsonl_out, "-"):
            result = invoke(*inputs, "--engine", tiny_onnx, "--output", out, input=stdin)
            assert result.exit_code == 0, (inputs, out, result.output, result.exception)
        assert raw in csv_out.read_bytes()  # the CSV holds the name's own bytes
        rows = [json.loads(line) for line in jsonl_out.read_text(encoding="utf-8").splitlines()]
        assert sorted(os.fsencode(r["path"]).endswith(b"bad\xff.png") for r in rows) == [False, True]
        assert all(r["status"] == "ok" for r in rows)
