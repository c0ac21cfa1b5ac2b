"""Atomic file writes: readers never see half a file, a failure leaves no output behind, and a
write killed halfway (SIGKILL, power loss) leaves a temp file that the next write removes.

Temp files are hidden siblings named ``.<name>.<pid>.<random>.tmp``: the pid tells a later
writer whether the process that made one is gone, so only abandoned temps are deleted.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
from pathlib import Path
from typing import Callable, Iterator, Optional

from symnets_deploy.errors import StorageError, UsageError


def _alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    try:  # Linux: a killed process whose parent died stays a zombie where init does not reap (containers)
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[-1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def remove_stale_temps(path: str | Path) -> list[Path]:
    """Delete the temp files of ``path`` left by processes that no longer run.

    Returns:
        The files removed.
    """
    path = Path(path)
    removed = []
    prefix = f".{path.name}."
    for candidate in path.parent.glob(f".{glob.escape(path.name)}.*.tmp") if path.parent.is_dir() else ():
        pid = candidate.name[len(prefix):].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def temp_path(path: str | Path) -> Path:
    """A unique hidden name beside ``path`` (same filesystem, so renaming it onto ``path`` is atomic).

    Not created here, so the writer creates it with the usual permissions. Abandoned temps of
    ``path`` are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` on a temp file beside ``path``, then rename it onto ``path``.

    Args:
        path: the final file name; its folder is created if needed.
        write: writes the whole content to the temp path it is given.

    Returns:
        ``path``.

    Raises:
        Whatever ``write`` raises; the temp file is removed first.
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        write(tmp)
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), tmp):
            raise OSError(exc.errno, exc.strerror, str(path)) from None  # name the file the user asked for, not our temp
        raise
    return path


def lock_holder(lock: Path) -> Optional[int]:
    """The pid of the live process holding ``lock`` (a file with its pid), None when nobody does."""
    try:
        owner = lock.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        return None
    return int(owner) if owner.isdigit() and _alive(int(owner)) else None


@contextlib.contextmanager
def exclusive(path: str | Path, what: str = "writing", lock: Optional[Path] = None) -> Iterator[None]:
    """Hold ``<path>.lock`` (or ``lock``) while writing ``path``; a second live writer is refused.

    Raises:
        UsageError: another running process holds the lock (its pid is named); StorageError: the
            folder cannot be written. A lock left by a process that no longer runs is taken over.
    """
    lock = Path(lock) if lock is not None else Path(path).with_name(Path(path).name + ".lock")
    for _ in range(2):
        try:
            lock.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            owner = lock_holder(lock)
            if owner is not None:
                raise UsageError(f"{path}: another process (pid {owner}) is {what} it; wait for it or choose another output") from None
            lock.unlink(missing_ok=True)  # left by a process that is gone
        except OSError as exc:  # read-only or missing folder, no permission, a full disk
            raise StorageError.from_os_error(exc, path) from None
    else:
        raise UsageError(f"{path}: could not take {lock}")
    try:
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
