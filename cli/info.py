"""``symnets info``: what a model file is, or (without a file) what this machine can run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from symnets_deploy.cli.main import command, handle_errors


@command()
@handle_errors
def info(
    file: Optional[Path] = typer.Argument(None, help="model.onnx, model.plan (with its sidecar), last.pt or a run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of aligned lines."),
) -> None:
    """Say what a model file is, or what this machine can run.

    For a file: format, precision, classes, preprocessing, backbone, method, source -> target, target accuracy (from class folders, evaluation only), package version and sha256 (for a .plan also its sidecar's TensorRT version, GPU and batch profile).

    Without a file, describe the environment: the package, Python, torch and its CUDA devices, onnxruntime and its providers, TensorRT; paste it into bug reports.
    """
    from symnets_deploy.info import describe_file, environment, format_facts

    if file is None:
        facts = environment()
        facts.update(_torch_facts())
    elif file.is_dir() or file.suffix.lower() == ".pt":
        from symnets_deploy.train.checkpoint import describe_checkpoint

        facts = describe_checkpoint(file)
    else:
        facts = describe_file(file)
    typer.echo(json.dumps(facts, indent=2) if as_json else "\n".join(format_facts(facts)))


def _torch_facts() -> dict:
    """torch and its CUDA devices, when torch is installed (the training and export extras)."""
    from symnets_deploy._optional import is_available

    if not is_available("torch"):
        return {"torch": None}
    import torch

    devices = [f"{torch.cuda.get_device_name(i)} (compute capability {'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
               for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    return {"torch": torch.__version__, "torch_cuda_devices": devices or None}
