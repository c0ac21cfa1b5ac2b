"""How many threads torch's CPU kernels may use while other jobs share the cores (issue 19, item 10).

Each small kernel of a CPU training splits over all intra-op threads and ends at a barrier. When
other processes keep the cores busy, one of our threads is often descheduled, and every barrier then
waits for its next time slice: a 300-iteration run took 16x longer beside four busy loops, where a
fair share of 2 cores among 6 threads is 3x. One thread has no barrier to wait at. So the loop asks
the kernel how contended the CPU is (Linux's pressure stall information: the share of the last 10 s
in which some task waited for a CPU) and uses one thread while it is high, all of them when it is low.
``bench/cpu_contention.py`` measures it. Without ``/proc/pressure/cpu`` nothing changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

PRESSURE = Path("/proc/pressure/cpu")
#: Percent of the last 10 s with a task waiting for a CPU above which the run drops to one thread.
#: Measured on 2 cores: about 4 % while a training runs alone, 68-82 % beside four busy loops.
CONTENDED = 25.0


def cpu_pressure(path: Path = PRESSURE) -> Optional[float]:
    """``some avg10`` of the CPU pressure file, None where the kernel does not provide it."""
    try:
        first = path.read_text(encoding="ascii").splitlines()[0]
        fields = dict(item.split("=", 1) for item in first.split()[1:])
        return float(fields["avg10"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


class ThreadFit:
    """Keeps ``torch.set_num_threads`` at ``wanted`` on a quiet CPU and at 1 on a contended one."""

    def __init__(self, wanted: Optional[int] = None, path: Path = PRESSURE) -> None:
        self.wanted = wanted or torch.get_num_threads()
        self.path = path
        self.threads = torch.get_num_threads()

    def update(self) -> int:
        """Check the pressure now (at a metrics record: cheap, a file read) and set the thread count."""
        pressure = cpu_pressure(self.path)
        threads = self.wanted if pressure is None or pressure < CONTENDED else 1
        if threads != self.threads:
            torch.set_num_threads(threads)
            self.threads = threads
        return threads

    def restore(self) -> None:
        if self.threads != self.wanted:
            torch.set_num_threads(self.wanted)
            self.threads = self.wanted
