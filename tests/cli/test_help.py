"""``--help`` reads well in an 80-column terminal, and usage errors look like every other error (issue 11)."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

from symnets_deploy.cli.main import app
from tests.cli_checks import error_line

runner = CliRunner()
NARROW = {"COLUMNS": "80", "TERMINAL_WIDTH": "80", "NO_COLOR": "1"}


@pytest.fixture(autouse=True)
def narrow_terminal(monkeypatch):
    """80 columns, also where Typer read TERMINAL_WIDTH when first imported (it keeps that value)."""
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 80)
COMMANDS = ("train", "export", "predict", "evaluate", "verify", "demo", "info", "report")


def _tokens(text: str) -> set[str]:
    return set(text.replace("│", " ").split())


@pytest.mark.parametrize("name", COMMANDS)
def test_help_fits_80_columns_with_every_option_whole(name: str) -> None:
    result = runner.invoke(app, [name, "--help"], env=NARROW)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "<bool>" not in text  # flags take no value
    tokens = _tokens(text)
    command = typer.main.get_command(app).commands[name]
    for param in command.params:
        for opt in (*param.opts, *param.secondary_opts):
            assert opt.startswith("-") is False or opt in tokens, (name, opt)
        words = (param.help or "").replace("\\[", "[").split()
        missing = [w for w in words if w not in tokens]
        assert not missing, (name, param.name, missing)  # a word cut or folded mid-word is missing


def test_top_level_help_lists_every_command_in_80_columns() -> None:
    text = runner.invoke(app, ["--help"], env=NARROW).output
    assert "…" not in text and "<bool>" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert all(f"│ {name} " in text for name in COMMANDS)


def test_choices_are_shown_as_choices() -> None:
    text = runner.invoke(app, ["train", "--help"], env=NARROW).output
    for choices in ("<symnets|source-only>", "<ct|cs|paired>", "<auto|cpu|cuda>"):
        assert choices in text, choices
    assert all(name in text for name in ("none,", "no-ct-loss,", "domain-confusion-only."))
    panels = re.findall(r"╭─ (\w[\w ()-]*?) ─", text)
    assert panels == ["Options", "Data", "Model", "Optimisation", "Schedule", "Output", "Advanced"]


@pytest.mark.parametrize("args, words", [
    (["predict", "x.jpg", "--engine", "m.onnx", "--device", "gpu"], ["--device", "'gpu'", "'auto', 'cpu', 'cuda'"]),
    (["export", "--precision", "int4"], ["--precision", "'int4'"]),
    (["nosuch"], ["No such command 'nosuch'"]),
    (["predict"], ["Missing argument"]),
])
def test_usage_errors_are_one_error_line(args, words) -> None:
    line = error_line(runner.invoke(app, args, env=NARROW), 2)
    assert all(w in line for w in words) and "Value error" not in line and "--help" in line


@pytest.mark.parametrize("name, usage, row", [
    ("verify", "Usage: symnets verify [OPTIONS] ARTIFACT", "ARTIFACT      <path>"),
    ("predict", "Usage: symnets predict [OPTIONS] INPUTS...", "INPUTS...      <str>"),
])
def test_arguments_read_as_a_user_types_them(name: str, usage: str, row: str) -> None:
    """No Python inside the help: ``{artifact}`` (a parameter name in braces), ``<list[str]>`` (a type) (issue 19 item 12)."""
    text = runner.invoke(app, [name, "--help"], env=NARROW).output
    assert usage in text and row in text
    assert "{" not in text and "list[" not in text
    assert "Missing argument 'INPUTS'" in runner.invoke(app, ["predict"], env=NARROW).stderr
