"""SIGINT and SIGTERM during training: finish the current iteration, checkpoint, and exit 130 / 143.

The first signal only sets a flag that the loop reads after each optimizer step, so the
checkpoint is as exact as a periodic one and ``--resume`` continues bit for bit. A second
signal gets the previous behaviour at once (KeyboardInterrupt for Ctrl-C), for a user who
cannot wait for the checkpoint.
"""

from __future__ import annotations

import signal
import threading
from typing import Optional

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager; ``signum`` is the signal that asked the loop to stop (None: none yet)."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def _handle(self, signum: int, _frame) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
