"""``symnets train`` through Typer's CliRunner: help, a tiny run, and exit codes of STYLE.md's table."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from symnets_deploy.cli.main import app

torch = pytest.importorskip("torch")

from tests.cli_checks import error_line

runner = CliRunner()
# Wide, plain help text: option names are never wrapped or truncated.
ENV = {"COLUMNS": "200", "TERMINAL_WIDTH": "200", "NO_COLOR": "1"}


def _tiny_args(data_root: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train", "--source", "photos", "--target", "sketches", "--data-root", str(data_root), "--backbone", "tiny",
        "--iterations", "3", "--batch-size", "4", "--image-size", "32", "--device", "cpu", "--out", str(out), "--no-report", *extra,
    ]


def test_train_help_lists_the_options():
    result = runner.invoke(app, ["train", "--help"], env=ENV)
    assert result.exit_code == 0, result.output
    for option in ("--source", "--target", "--data-root", "--backbone", "--method", "--ablation", "--iterations",
                   "--batch-size", "--lr", "--device", "--out", "--resume", "--head"):
        assert option in result.output, option


def test_option_defaults_are_the_config_defaults():
    """The CLI takes every default from TrainConfig (one place), and spells choices as the config stores them."""
    import typer.main

    from symnets_deploy.train.config import DEFAULTS

    command = typer.main.get_command(app).commands["train"]
    shared = {p.name: p.default for p in command.params if p.name in DEFAULTS and p.default is not None}
    assert len(shared) == 23  # every option with a fixed default; the others (None, e.g. lr) are resolved by TrainConfig
    assert {name: getattr(value, "value", value) for name, value in shared.items()} == {name: DEFAULTS[name] for name in shared}


def test_top_level_help_and_version():
    result = runner.invoke(app, ["--help"], env=ENV)
    assert result.exit_code == 0 and "train" in result.output
    result = runner.invoke(app, ["--version"], env=ENV)
    assert result.exit_code == 0
    from symnets_deploy import __version__

    assert __version__ in result.stdout


def test_tiny_run_prints_the_accuracy_line(shapes_root, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, _tiny_args(shapes_root, out), env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    summary = json.loads((out / "summary.json").read_text())
    for name in ("last.pt", "config.json", "metrics.jsonl"):
        assert (out / name).is_file()
    match = re.search(r"photos -> sketches \(symnets, tiny\): target acc Ct ([\d.]+)%, Cs ([\d.]+)%", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) == pytest.approx(100 * summary["target_acc_ct"], abs=0.006)
    assert float(match.group(2)) == pytest.approx(100 * summary["target_acc_cs"], abs=0.006)
    assert str(out) in result.stdout
    config = json.loads((out / "config.json").read_text())
    assert (config["backbone"], config["iterations"], config["batch_size"], config["image_size"]) == ("tiny", 3, 4, 32)


def test_resume_needs_only_the_run_folder_and_refuses_other_options(shapes_root, tmp_path):
    """Issue 9, case 7: --resume used to require --source/--target/--data-root and then ignore every option."""
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(shapes_root, out, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(out)], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "photos -> sketches" in result.stdout and "3 it in" in result.stdout
    args = ["train", "--source", "x", "--data-root", str(tmp_path), "--lr", "0.5", "--seed", "0", "--resume", str(out)]
    line = error_line(runner.invoke(app, args, env=ENV), 2)
    from symnets_deploy.train.backbones import get_backbone

    for named in ("--source x (the run has photos)", "--data-root", f"--lr 0.5 (the run has {get_backbone('tiny').lr})"):
        assert named in line, line
    assert "--seed" not in line  # given, but equal to the run's


def test_resume_may_raise_the_iterations_only(shapes_root, tmp_path):
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(shapes_root, out, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    assert "--iterations 2 (the run has 3)" in error_line(runner.invoke(app, ["train", "--resume", str(out), "--iterations", "2"], env=ENV), 2)
    result = runner.invoke(app, ["train", "--resume", str(out), "--iterations", "5"], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    assert "5 it in" in result.stdout and json.loads((out / "summary.json").read_text())["iterations"] == 5


def test_resume_without_a_run_is_a_usage_error(tmp_path):
    line = error_line(runner.invoke(app, ["train", "--resume", str(tmp_path / "nothing")], env=ENV), 2)
    assert "config.json" in line


def test_a_new_run_needs_source_target_and_data_root(tmp_path):
    line = error_line(runner.invoke(app, ["train", "--source", "amazon", "--out", str(tmp_path / "run")], env=ENV), 2)
    assert "missing --target, --data-root (or --resume RUN" in line


def test_mismatched_class_folders_exit_2(shapes_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    shutil.move(root / "sketches" / "triangle", root / "sketches" / "hexagon")
    line = error_line(runner.invoke(app, _tiny_args(root, tmp_path / "run"), env=ENV), 2)
    assert "triangle" in line and "hexagon" in line


def test_empty_domain_exit_2(shapes_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shapes_root / "photos", root / "photos")
    for cls in ("circle", "square", "triangle"):
        (root / "sketches" / cls).mkdir(parents=True)
    line = error_line(runner.invoke(app, _tiny_args(root, tmp_path / "run"), env=ENV), 2)
    assert "sketches" in line


def test_missing_domain_exit_2(shapes_root, tmp_path):
    args = _tiny_args(shapes_root, tmp_path / "run")
    args[args.index("sketches")] = "paintings"
    line = error_line(runner.invoke(app, args, env=ENV), 2)
    assert "paintings" in line


@pytest.mark.parametrize(
    "extra,needle",
    [
        (("--backbone", "vgg16"), "vgg16"),
        (("--iterations", "0"), "iterations"),
    ],
)
def test_bad_options_exit_2(shapes_root, tmp_path, extra, needle):
    line = error_line(runner.invoke(app, _tiny_args(shapes_root, tmp_path / "run", *extra), env=ENV), 2)
    assert needle in line
    assert not (tmp_path / "run" / "last.pt").exists()


@pytest.mark.parametrize("option, bad, valid", [
    ("--method", "dann", ["symnets", "source-only"]),
    ("--ablation", "no-such-ablation", ["none", "no-ct-loss", "no-entropy", "no-confusion", "domain-confusion-only"]),
])
def test_unknown_choices_exit_2_listing_the_valid_ones(shapes_root, tmp_path, option, bad, valid):
    line = error_line(runner.invoke(app, _tiny_args(shapes_root, tmp_path / "run", option, bad), env=ENV), 2)
    assert option in line and bad in line and all(f"'{v}'" in line for v in valid) and "Value error" not in line
    assert not (tmp_path / "run").exists()


def test_click_usage_errors_exit_2(shapes_root, tmp_path):
    result = runner.invoke(app, ["train", "--source", "photos"], env=ENV)  # --target and --data-root missing
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    result = runner.invoke(app, _tiny_args(shapes_root, tmp_path / "run", "--head", "middle"), env=ENV)
    assert result.exit_code == 2


def test_schedule_options_reach_the_run(shapes_root, tmp_path):
    out = tmp_path / "run"
    extra = ("--momentum", "0.5", "--weight-decay", "0.001", "--lr-alpha", "5", "--lr-beta", "0.5", "--lambda-gamma", "3", "--log-every", "1")
    result = runner.invoke(app, _tiny_args(shapes_root, out, *extra), env=ENV)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert (config["momentum"], config["weight_decay"], config["lr_alpha"], config["lr_beta"], config["lambda_gamma"]) == (0.5, 0.001, 5.0, 0.5, 3.0)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in records if "lr_head" in r][-1]  # iteration 3 of 3 used p = 2/3
    p = 2 / 3
    assert last["lr_head"] == pytest.approx(config["lr"] / (1 + 5 * p) ** 0.5)
    assert last["lambda"] == pytest.approx(2 / (1 + math.exp(-3 * p)) - 1)


def test_invalid_momentum_is_a_usage_error(shapes_root, tmp_path):
    result = runner.invoke(app, _tiny_args(shapes_root, tmp_path / "run", "--momentum", "1.5"), env=ENV)
    assert "momentum" in error_line(result, 2)


def test_resume_accepts_speed_options_and_checkpoints_older_than_them(shapes_root, tmp_path):
    """Fields added later (cuda_graph) take their default; options that only change speed may change."""
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(shapes_root, out, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    ckpt = torch.load(out / "last.pt", map_location="cpu", weights_only=True)
    del ckpt["config"]["cuda_graph"]
    torch.save(ckpt, out / "last.pt")
    config = json.loads((out / "config.json").read_text())
    del config["cuda_graph"]
    (out / "config.json").write_text(json.dumps(config))
    result = runner.invoke(app, ["train", "--resume", str(out), "--iterations", "4", "--no-cuda-graph", "--threads", "1"], env=ENV)
    assert result.exit_code == 0, (result.output, result.exception)
    saved = json.loads((out / "config.json").read_text())
    assert (saved["cuda_graph"], saved["threads"], saved["iterations"]) == (False, 1, 4)


def test_a_new_run_refuses_a_folder_that_holds_another_run(shapes_root, tmp_path):
    """Issue 9, case 1: run B used to start in run A's folder, and --resume then mixed them."""
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(shapes_root, out, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    run_a = json.loads((out / "config.json").read_text())["run_id"]
    line = error_line(runner.invoke(app, _tiny_args(shapes_root, out, "--lr", "0.05"), env=ENV), 2)
    assert f"{out}: holds another run" in line and "--resume" in line and "--overwrite" in line and "--out" in line
    assert json.loads((out / "config.json").read_text())["run_id"] == run_a  # nothing was touched
    result = runner.invoke(app, _tiny_args(shapes_root, out, "--lr", "0.05", "--overwrite"), env=ENV)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["run_id"] != run_a


def test_resume_refuses_a_checkpoint_of_another_run(shapes_root, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert runner.invoke(app, _tiny_args(shapes_root, a, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    assert runner.invoke(app, _tiny_args(shapes_root, b, "--lr", "0.05", "--checkpoint-every", "1"), env=ENV).exit_code == 0
    shutil.copy(a / "last.pt", b / "last.pt")
    line = error_line(runner.invoke(app, ["train", "--resume", str(b)], env=ENV), 2)
    assert "last.pt was written by run" in line


def test_resume_refuses_changed_class_folders(shapes_root, tmp_path):
    """Issue 9, case 2: renamed classes were silently relabelled; a removed one gave a traceback."""
    data = tmp_path / "data"
    shutil.copytree(shapes_root, data)
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(data, out, "--checkpoint-every", "1"), env=ENV).exit_code == 0
    for domain in ("photos", "sketches"):
        (data / domain / "circle").rename(data / domain / "ring")
    line = error_line(runner.invoke(app, ["train", "--resume", str(out)], env=ENV), 2)
    assert "class folders differ from the checkpoint's (missing: circle; new: ring)" in line
    for domain in ("photos", "sketches"):
        shutil.rmtree(data / domain / "ring")
    line = error_line(runner.invoke(app, ["train", "--resume", str(out)], env=ENV), 2)
    assert "missing: circle" in line


def test_a_relative_data_root_is_stored_absolute(shapes_root, tmp_path, monkeypatch):
    """Export's default check images come from config.json's data_root, possibly run from another folder."""
    monkeypatch.chdir(shapes_root.parent)
    out = tmp_path / "run"
    assert runner.invoke(app, _tiny_args(Path(shapes_root.name), out), env=ENV).exit_code == 0
    assert json.loads((out / "config.json").read_text())["data_root"] == str(shapes_root.resolve())


def test_the_default_out_is_a_new_folder_linked_as_latest(shapes_root, tmp_path, monkeypatch):
    """The default --out used to be runs/latest itself, so every run overwrote the previous one."""
    monkeypatch.chdir(tmp_path)
    args = [a for a in _tiny_args(shapes_root, tmp_path) if a not in ("--out", str(tmp_path))]
    for _ in range(2):
        assert runner.invoke(app, [*args, "--checkpoint-every", "1"], env=ENV).exit_code == 0
    runs = sorted(p for p in (tmp_path / "runs").iterdir() if not p.is_symlink())
    assert len(runs) == 2 and all((r / "last.pt").is_file() for r in runs)
    latest = tmp_path / "runs" / "latest"
    assert latest.is_symlink() and latest.resolve() == runs[-1].resolve()
    result = runner.invoke(app, ["train", "--resume", "runs/latest"], env=ENV)
    assert result.exit_code == 0, result.output
