"""Rich progress display for long commands (to stderr, so stdout stays machine-readable)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, log_path=False)


class TrainProgress:
    """A ``train.Reporter`` that draws a bar with the latest losses, accuracy and images/s."""

    def __init__(self) -> None:
        self._progress: Progress | None = None
        self._task = None
        self._fields: dict[str, str] = {}

    def stage(self, text: str) -> None:
        console.log(text)

    def warn(self, text: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)

    def start(self, total: int, completed: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]train"), BarColumn(bar_width=16), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), console=console, transient=False,
        )
        self._progress.start()
        self._task = self._progress.add_task("train", total=total, completed=completed, info="")

    def advance(self, iteration: int, info: dict[str, Any]) -> None:
        for key, label in (("cls_total", "cls"), ("feat_total", "feat"), ("total", "loss"), ("acc_ct", "acc"), ("images_per_s", "img/s")):
            if key in info:
                value = info[key]
                self._fields[label] = f"{value:.0f}" if label == "img/s" else f"{value:.3f}"
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, info=" ".join(f"{k}={v}" for k, v in self._fields.items()))

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
