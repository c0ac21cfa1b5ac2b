"""Facts about the machine a command runs on, defined once: usable CPU cores and the cache root."""

from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cache_root() -> Path:
    """``$XDG_CACHE_HOME/symnets-deploy``, else ``~/.cache/symnets-deploy``: every cache of the project lives below."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "symnets-deploy"
