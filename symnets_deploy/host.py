"""Facts about the machine and process a command runs in, defined once: usable CPU cores, the cache root,
the process's place among training processes (torch-free, so the CLI can ask before importing torch)."""

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


def in_launched_group() -> bool:
    """Whether torchrun (or ``--nproc``'s launcher) started this process: it sets ``WORLD_SIZE``."""
    return "WORLD_SIZE" in os.environ


def launched_world_size() -> int:
    """The number of training processes the launcher started (1 without one)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def launched_rank() -> int:
    """This process's rank as the launcher numbers it (0 without one), before any process group is joined."""
    return int(os.environ.get("RANK", "0"))
