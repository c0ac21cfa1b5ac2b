"""Which file, if any, backs a tensor's memory in this process (Linux: /proc/self/maps)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional


def backing_file(tensor) -> Optional[tuple[int, str]]:
    """(inode, path) of the file mapping that holds ``tensor``'s first byte; None for anonymous memory."""
    address = tensor.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(part, 16) for part in fields[0].split("-"))
        if start <= address < end:
            inode = int(fields[4])
            # A file removed while mapped reads "PATH (deleted)", at the moment its name goes: the inode says which file.
            return (inode, fields[5].removesuffix(" (deleted)")) if inode and len(fields) > 5 else None
    return None
