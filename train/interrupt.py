"""SIGINT, SIGTERM and SIGHUP during training, and a launcher that went away.

Before the first iteration (start-up: scanning, decoding) a signal stops the run at once:
nothing is trained, so nothing is worth saving, and the caller removes what the start wrote.
From the first iteration on, the first signal only sets a flag that the loop reads after each
optimizer step, so the checkpoint is as exact as a periodic one and ``--resume`` continues bit
for bit. A second signal gets the previous behaviour at once (KeyboardInterrupt for Ctrl-C), for
a user who cannot wait for the checkpoint. SIGHUP (a closed terminal or SSH session) counts as
SIGTERM does.

A process started by ``symnets train --nproc N`` whose launcher died (``kill -9``) is orphaned:
``parent_gone`` tells the loop, which stops the run the same way (checkpoint, then exit).
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Optional

from symnets_deploy.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class StopRequest:
    """Context manager; ``signum`` is the signal that asked the loop to stop (None: none yet).

    Attributes:
        deferred: False during start-up (a signal raises ``Interrupted`` at once); the loop sets it.
        parent: the pid of the launcher to watch (None: not launched by ``--nproc``).
    """

    def __init__(self, parent: Optional[int] = None) -> None:
        self.signum: Optional[int] = None
        self.deferred = False
        self.parent = parent
        self._previous: dict[int, object] = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            self._previous = {sig: signal.signal(sig, self._handle) for sig in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    @property
    def parent_gone(self) -> bool:
        """Whether the launcher this process was started by has died (we were re-parented)."""
        return self.parent is not None and os.getppid() != self.parent

    @property
    def asked(self) -> bool:
        return self.signum is not None or self.parent_gone

    def reason(self) -> str:
        """What asked the run to stop, for the message."""
        if self.signum is not None:
            return signal.Signals(self.signum).name
        return f"the launcher (pid {self.parent}) is gone"

    def exit_signal(self) -> int:
        """The signal whose 128 + number is the exit code (SIGHUP for a lost launcher)."""
        return self.signum if self.signum is not None else int(signal.SIGHUP)

    def _handle(self, signum: int, _frame) -> None:
        self.signum = signum
        signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
        if not self.deferred:
            name = signal.Signals(signum).name
            raise Interrupted(f"{name} during start-up, before the first iteration: nothing was trained", signum)
