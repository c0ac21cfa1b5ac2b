"""Options shared by the commands that run an artifact (``predict``, ``evaluate``), defined once."""

from __future__ import annotations

import typer

from symnets_deploy.enums import Device

BATCH_SIZE = typer.Option(16, "--batch-size", min=1, help="Images per inference call (fitted into a TensorRT profile).")
DEVICE = typer.Option(Device.auto, help="auto: TensorRT/CUDA when available, else CPU.")
PROVIDER = typer.Option(None, case_sensitive=False, help="ONNX Runtime execution provider (overrides --device).")
THREADS = typer.Option(0, min=0, help="Inference threads in total (0: one per CPU core).")
