"""Does the installed onnxruntime itself refuse external data outside the model's folder?

Our own check (``symnets_deploy.external_data``) runs before any session, whatever the version;
this script measured which onnxruntime releases enforce it too, to choose the minimum in
pyproject (issue 9, case 5). For each escape (``../..``, an absolute path, an in-folder symlink to
an outside file) and each way of loading (by path, from bytes) it builds a MatMul model by hand,
opens it with a bare ``InferenceSession`` and prints whether it was loaded. A plain file beside
the model is the control: it must load by path.

    python bench/ort_external_data.py
    pip install --no-deps --target /tmp/ort onnxruntime==1.24.1 && PYTHONPATH=/tmp/ort python bench/ort_external_data.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.runtime.test_external_data import WEIGHTS, model_with_external  # noqa: E402

IR_VERSION = 8  # old enough for every onnxruntime release this script is pointed at


def build(folder: Path, location: str, outside: Path) -> Path:
    path = model_with_external(folder, location)
    model = onnx.load(str(path), load_external_data=False)
    model.ir_version = IR_VERSION
    path.write_bytes(model.SerializeToString())
    if location == "weights.bin":
        (folder / location).write_bytes(WEIGHTS.tobytes())
    elif location == "link.bin":
        os.symlink(outside, folder / location)
    return path


def loads(path: Path, from_bytes: bool) -> str:
    try:
        session = ort.InferenceSession(path.read_bytes() if from_bytes else str(path), providers=["CPUExecutionProvider"])
        session.run(None, {"images": np.ones((1, 2), np.float32)})
        return "LOADED"
    except Exception as exc:  # noqa: BLE001 - any refusal counts; its first words say why
        return "refused (" + " ".join(str(exc).split())[-60:] + ")"


def main() -> None:
    ort.set_default_logger_severity(4)  # the refusals are the table, not log lines
    root = Path(tempfile.mkdtemp())
    outside = root / "outside.bin"
    outside.write_bytes(WEIGHTS.tobytes())
    cases = {"plain file beside (control)": "weights.bin", "../../outside.bin": "../../outside.bin", "absolute path": str(outside), "symlink to outside": "link.bin"}
    print(f"onnxruntime {ort.__version__}\n\n| external data | by path | from bytes |\n|---|---|---|")
    for number, (name, location) in enumerate(cases.items()):
        path = build(root / f"case{number}" / "m", location, outside)
        print(f"| {name} | {loads(path, False)} | {loads(path, True)} |")


if __name__ == "__main__":
    main()
