"""The prediction path runs where torch cannot be imported: the API and ``symnets predict``.

Each check runs in a fresh interpreter with ``sys.modules["torch"] = None`` (any import of
torch raises ImportError), the way an edge device without PyTorch behaves.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnxruntime")

from .conftest import BAD, GOOD  # noqa: E402

API = """
from symnets_deploy import Predictor
from symnets_deploy.inputs import collect_paths
with Predictor.load(sys.argv[1], device="cpu") as predictor:
    results = predictor.predict_paths(collect_paths([sys.argv[2]]))
loaded = sorted(m for m in sys.modules if m.startswith(("torch", "symnets_deploy.train", "symnets_deploy.export")) and sys.modules[m] is not None)
print(json.dumps({"statuses": [r.status for r in results], "loaded": loaded}))
"""

CLI = """
from symnets_deploy.cli.main import main
sys.argv = ["symnets", "predict", *sys.argv[1:]]
main()
"""


def run_python(code: str, *args, blocked=("torch", "torchvision")) -> subprocess.CompletedProcess:
    source = f"import json, sys\nfor name in {tuple(blocked)!r}:\n    sys.modules[name] = None\n" + code
    return subprocess.run([sys.executable, "-c", source, *map(str, args)], capture_output=True, text=True, timeout=120)


def test_predictor_api_without_torch(tiny_onnx: Path, mixed_folder: Path) -> None:
    proc = run_python(API, tiny_onnx, mixed_folder)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.splitlines()[-1])
    assert sorted(report["statuses"]) == sorted(["ok"] * len(GOOD) + ["error"] * len(BAD))
    assert report["loaded"] == []


def test_predict_command_without_torch(tiny_onnx: Path, mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.csv"
    proc = run_python(CLI, mixed_folder, "--engine", tiny_onnx, "--output", out)
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(GOOD) + len(BAD)


def test_predict_without_onnxruntime_names_the_extra(tiny_onnx: Path, mixed_folder: Path) -> None:
    proc = run_python(CLI, mixed_folder, "--engine", tiny_onnx, blocked=("torch", "onnxruntime"))
    assert proc.returncode == 4, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "pip install 'symnets-deploy[cpu]'" in lines[0]


def test_predict_help_loads_no_torch() -> None:
    proc = run_python(CLI, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--engine" in proc.stdout and "--top-k" in proc.stdout
