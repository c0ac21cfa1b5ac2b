"""Turn command-line inputs (folders, files, lists of paths, stdin) into an ordered list of image paths.

Order is deterministic: inputs in the order given, each folder's images sorted by path; a
file reached twice is listed once. Only folder scans filter by extension: a file named
explicitly is always predicted (a non-image becomes an error row, not a silent skip).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Optional, TextIO

from symnets_deploy.errors import UsageError
from symnets_deploy.preprocess import IMAGE_EXTENSIONS

#: Suffixes of text files that list one path per line (a leading ``@`` marks any file as a list).
LIST_SUFFIXES = frozenset({".txt", ".lst"})

#: The input that means "read paths from standard input".
STDIN = "-"


def is_image_file(path: str | Path) -> bool:
    """Whether a file name has an image extension.

    Args:
        path: a file name or path.

    Returns:
        True when its suffix, lower-cased, is in ``preprocess.IMAGE_EXTENSIONS``.
    """
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def scan_folder(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """Image files in a folder, sorted.

    Hidden files and folders (names starting with ``.``, e.g. macOS ``._x.jpg``) are skipped,
    and symbolic links to folders are not followed (no cycles).

    Args:
        folder: the folder to scan.
        recursive: descend into sub-folders.

    Returns:
        Paths (``folder`` joined with the relative path), sorted by their parts.
    """
    folder = Path(folder)
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs[:] = [] if not recursive else [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root, f) for f in files if not f.startswith(".") and is_image_file(f))
    return sorted(found, key=lambda p: p.parts)


def read_path_list(lines: Iterable[str], base: Optional[Path] = None) -> list[Path]:
    """Paths listed one per line; blank lines and lines starting with ``#`` are ignored.

    Args:
        lines: the list's lines.
        base: relative entries are taken relative to this folder (the list file's);
            None keeps them relative to the working directory (stdin).

    Returns:
        The paths in listed order.
    """
    paths = []
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#"):
            path = Path(entry).expanduser()
            paths.append(base / path if base is not None and not path.is_absolute() else path)
    return paths


def collect_paths(inputs: Iterable[str | Path], *, recursive: bool = True, stdin: Optional[TextIO] = None) -> list[Path]:
    """Every image path the inputs name, in a deterministic order.

    Args:
        inputs: each one a folder (scanned for images), an image file, a list of paths
            (``@paths`` or a ``.txt``/``.lst`` file; its entries may be files or folders and are
            relative to the list's folder), or ``"-"`` for a list on standard input.
        recursive: scan sub-folders of folders.
        stdin: stream read for ``"-"`` (default ``sys.stdin``).

    Returns:
        Image paths, first occurrence first; listed entries that do not exist are kept, so
        that each becomes an error row instead of ending the run.

    Raises:
        UsageError: no inputs, an input on the command line that does not exist, an
            unreadable list, or nothing to predict at all.
    """
    inputs = [str(i) for i in inputs]
    if not inputs:
        raise UsageError("no input paths given")
    seen: set[str] = set()
    result: list[Path] = []
    for path in _expand(inputs, recursive=recursive, stdin=stdin):
        key = os.path.normpath(os.path.abspath(path))
        if key not in seen:
            seen.add(key)
            result.append(path)
    if not result:
        raise UsageError(f"no images found in {', '.join(inputs)} (extensions: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return result


def _expand(inputs: list[str], *, recursive: bool, stdin: Optional[TextIO]) -> Iterator[Path]:
    for item in inputs:
        if item == STDIN:
            yield from _expand_listed(read_path_list(stdin if stdin is not None else _stdin_lines()), recursive)
            continue
        is_list = item.startswith("@")
        path = Path(item[1:] if is_list else item).expanduser()
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
        if path.is_dir():
            yield from scan_folder(path, recursive=recursive)
        elif is_list or path.suffix.lower() in LIST_SUFFIXES:
            try:
                # File names need not be UTF-8: undecodable bytes survive as surrogates, as in os.listdir.
                lines = path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise UsageError(f"{path}: cannot read the list of paths ({exc})") from None
            yield from _expand_listed(read_path_list(lines, base=path.parent), recursive)
        else:
            yield path


def _stdin_lines() -> list[str]:
    """Standard input's lines, decoded like file names (undecodable bytes kept as surrogates)."""
    raw = getattr(sys.stdin, "buffer", None)
    return [os.fsdecode(line) for line in raw.read().splitlines()] if raw is not None else sys.stdin.read().splitlines()


def _expand_listed(paths: list[Path], recursive: bool) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from scan_folder(path, recursive=recursive)
        else:
            yield path
