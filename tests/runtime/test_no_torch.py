"""The runtime an edge app embeds imports without torch (DESIGN.md section 1)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import symnets_deploy

RUNTIME = Path(symnets_deploy.__file__).resolve().parent
REQUIRED = [
    "symnets_deploy", "symnets_deploy.card", "symnets_deploy.preprocess", "symnets_deploy.enums",
    "symnets_deploy.errors", "symnets_deploy._optional", "symnets_deploy.backends.base", "symnets_deploy.backends.ort",
    "symnets_deploy.evaluation", "symnets_deploy.label_free", "symnets_deploy.monitoring", "symnets_deploy.onnx_metadata",
]
#: Never imported at module top by the runtime (STYLE.md section 6); torch never at all.
HEAVY = {"torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "typer"}
#: The rooms that need the extras; the runtime never imports them.
ROOMS = ("symnets_deploy.train", "symnets_deploy.export", "symnets_deploy.cli")


def _runtime_files() -> list[Path]:
    return sorted(RUNTIME.rglob("*.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(RUNTIME.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_runtime_folder_is_only_the_runtime():
    # train/, export/ and cli/ are mapped in from top-level folders, never nested here.
    names = {_module_name(p) for p in _runtime_files()}
    assert set(REQUIRED) <= names
    assert not any(n.startswith(ROOMS) for n in names)


_PROBE = r"""
import json, sys
if {block}:
    sys.modules["torch"] = None  # any "import torch" now raises ImportError
import importlib
for name in {modules!r}:
    importlib.import_module(name)
print(json.dumps(sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision", "symnets_deploy.train", "symnets_deploy.export", "symnets_deploy.cli")))))
"""


def _probe(modules: list[str], *, block: bool) -> list[str]:
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE.format(block=block, modules=modules)], capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_runtime_imports_with_torch_blocked():
    pytest.importorskip("onnxruntime")  # allowed: backends import it lazily anyway
    loaded = _probe(REQUIRED, block=True)
    assert loaded == ["torch"]  # only our None placeholder


def test_every_runtime_module_imports_without_loading_torch():
    modules = sorted({_module_name(p) for p in _runtime_files()} | set(REQUIRED))
    assert _probe(modules, block=False) == []
    assert _probe(modules, block=True) == ["torch"]


def _imports(tree: ast.AST, *, top_level_only: bool):
    """(module name, line) of every import; with top_level_only, skip function and class bodies."""
    stack = list(ast.iter_child_nodes(tree))
    while stack:
        node = stack.pop()
        if top_level_only and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno
        stack.extend(ast.iter_child_nodes(node))


@pytest.mark.parametrize("path", _runtime_files(), ids=lambda p: str(p.relative_to(RUNTIME.parent)))
def test_no_heavy_imports_in_runtime_source(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    where = path.relative_to(RUNTIME.parent)
    for name, line in _imports(tree, top_level_only=False):
        root = name.split(".")[0]
        assert root != "torch", f"{where}:{line} imports {name}: the runtime never imports torch"
        assert not name.startswith(ROOMS), f"{where}:{line} imports {name}: the runtime never imports train/export/cli"
    for name, line in _imports(tree, top_level_only=True):
        assert name.split(".")[0] not in HEAVY, f"{where}:{line} imports {name} at module level: import it lazily"


def test_scanner_catches_module_level_torch(tmp_path):
    # The check above must be able to fail: a guarded or nested module-level import still counts.
    source = "import os\ntry:\n    import torch.nn as nn\nexcept ImportError:\n    pass\ndef f():\n    import onnx\n"
    tree = ast.parse(source)
    top = {n for n, _ in _imports(tree, top_level_only=True)}
    every = {n for n, _ in _imports(tree, top_level_only=False)}
    assert top == {"os", "torch.nn"}
    assert every == {"os", "torch.nn", "onnx"}
