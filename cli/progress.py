"""Progress of long commands on stderr (stdout stays machine-readable): a live bar in a terminal, and
plain lines at a steady interval when stderr goes to a file or a pipe (a log, a batch job), where a
bar would only appear at the end."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True, log_path=False)


#: Seconds between two plain progress lines when stderr is not a terminal.
LOG_INTERVAL = 30.0


class TrainProgress:
    """A ``train.Reporter`` that shows the latest losses, accuracy and images/s.

    ``img/s`` in the bar is the rate of the latest logging window (``--log-every`` iterations, evaluations
    left out); the run's result line gives the mean over the whole training.
    """

    def __init__(self, interval: float = LOG_INTERVAL) -> None:
        self._progress: Progress | None = None
        self._task = None
        self._fields: dict[str, str] = {}
        self._interval = interval
        self._plain: dict[str, float] = {}  # without a terminal: total, started, last printed

    def stage(self, text: str) -> None:
        console.log(text)

    def warn(self, text: str) -> None:
        console.print(f"[yellow]warning:[/yellow] {text}", highlight=False, soft_wrap=True)

    def start(self, total: int, completed: int) -> None:
        if not console.is_terminal:
            now = time.monotonic()
            self._plain = {"total": total, "completed": completed, "started": now, "printed": now}
            return
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
        fields = " ".join(f"{k}={v}" for k, v in self._fields.items())
        if self._progress is not None:
            self._progress.update(self._task, completed=iteration, info=fields)
        elif self._plain:
            self._plain_line(iteration, fields)

    def _plain_line(self, iteration: int, fields: str) -> None:
        now, plain = time.monotonic(), self._plain
        if now - plain["printed"] < self._interval and iteration < plain["total"]:
            return
        plain["printed"] = now
        elapsed = now - plain["started"]
        done = iteration - plain["completed"]
        left = (plain["total"] - iteration) * elapsed / done if done > 0 else float("nan")
        eta = f", about {_clock(left)} left" if left == left else ""
        console.print(f"train {iteration}/{int(plain['total'])} ({100 * iteration / plain['total']:.0f}%) {_clock(elapsed)} elapsed{eta} {fields}",
                      highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
        self._plain = {}


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
