"""Options shared by the commands that run an artifact (``predict``, ``evaluate``), and the help panels, defined once."""

from __future__ import annotations

import typer

from symnets_deploy.enums import Device

#: Help panels: options are grouped under these titles in ``--help``.
RUNTIME = "Runtime"

BATCH_SIZE = typer.Option(16, "--batch-size", min=1, metavar="N", help="Images per inference call.", rich_help_panel=RUNTIME)
DEVICE = typer.Option(Device.auto, help="auto: TensorRT/CUDA when available, else CPU.", rich_help_panel=RUNTIME)
PROVIDER = typer.Option(None, case_sensitive=False, metavar="NAME", help="ONNX Runtime provider: tensorrt, cuda or cpu (overrides --device).", rich_help_panel=RUNTIME)
THREADS = typer.Option(0, min=0, metavar="N", help="Inference threads in total (0: one per CPU core).", rich_help_panel=RUNTIME)
