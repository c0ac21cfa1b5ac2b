"""On-disk cache of decoded domains, so a second run skips JPEG decoding.

Training reads the images straight from the cache file through a memory map: the processes of a
``--nproc`` run, and any run training on the same domains, share one copy in the page cache.

The key hashes every file's relative path, label, size and mtime plus the resize side, so
any changed, added or removed image gives a new key; the stale entry of the same folder is
deleted when the new one is written.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zipfile
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch

from symnets_deploy.atomic import atomic_write
from symnets_deploy.errors import StorageError
from symnets_deploy.host import cache_root
from symnets_deploy.train.data import MAX_ASPECT, DecodedDomain, Domain, decode_domain

#: Bump when the decoded layout changes, so old caches are never misread.
CACHE_FORMAT = 1


def default_cache_dir() -> Path:
    """``$SYMNETS_CACHE_DIR``, else ``decoded`` under the project's cache root (~/.cache/symnets-deploy)."""
    env = os.environ.get("SYMNETS_CACHE_DIR")
    return Path(env) if env else cache_root() / "decoded"


def cache_key(domain: Domain, resize: int) -> str:
    """sha256 over the format, resize, aspect cap and every (path, label, size, mtime)."""
    h = hashlib.sha256(f"{CACHE_FORMAT}|{resize}|{MAX_ASPECT}".encode())
    for path, label in domain.samples:
        st = path.stat()
        h.update(f"|{path.relative_to(domain.root)}|{label}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cache_file(domain: Domain, resize: int, cache_dir: Path) -> Path:
    """``<cache_dir>/<folder hash>-<key>.npz``: one live entry per domain folder."""
    folder = hashlib.sha256(str(domain.root.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir) / f"{domain.name}-{folder}-{cache_key(domain, resize)[:32]}.npz"


def load_or_decode(
    domain: Domain, resize: int, *, threads: int = 0, cache_dir: Optional[Path] = None, warn: Callable[[str], None] = lambda _: None,
) -> tuple[DecodedDomain, bool]:
    """The decoded domain, from the cache when its key matches, else decoded and cached.

    The cache only saves time and memory: when it cannot be written (full disk, read-only, no
    permission), ``warn`` is told why and the decoded domain is returned all the same.

    Args:
        cache_dir: cache folder; None disables caching.

    Returns:
        (decoded domain on the CPU, whether it came from the cache). Its images are a memory map
        of the cache file whenever there is one.
    """
    if cache_dir is None:
        return decode_domain(domain, resize, threads), False
    path = cache_file(domain, resize, cache_dir)
    if path.is_file():
        try:
            return read_mapped(path), True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)  # a damaged entry is rebuilt, never trusted
    decoded = decode_domain(domain, resize, threads)
    prefix = path.name.rsplit("-", 1)[0] + "-"
    try:
        for stale in Path(cache_dir).glob(prefix + "*.npz"):
            stale.unlink(missing_ok=True)
        atomic_write(path, lambda tmp: _save(tmp, decoded))
    except OSError as exc:
        warn(f"decoded images not cached ({StorageError.from_os_error(exc, exc.filename or cache_dir)}); training goes on, and the next run decodes again (--no-cache skips the cache)")
        return decoded, False
    return read_mapped(path), False  # the file's pages, not this process's copy: shared with every reader


def read_mapped(path: Path) -> DecodedDomain:
    """A cache entry with its images mapped copy-on-write from the file (sizes and labels read)."""
    with np.load(path) as f:
        sizes, labels = f["sizes"], f["labels"]
    return DecodedDomain(torch.from_numpy(_map_member(Path(path), "images.npy")), torch.from_numpy(sizes), torch.from_numpy(labels))


def _map_member(path: Path, member: str) -> np.ndarray:
    """An array of an ``.npz`` as a memory map of the file.

    ``np.savez`` stores its members uncompressed, so an array's bytes lie in the file as they are,
    after the member's zip header and the array's ``.npy`` header; numpy only maps ``.npy`` files.
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(member)
    if info.compress_type != zipfile.ZIP_STORED:
        raise ValueError(f"{path}: {member} is compressed")
    with path.open("rb") as fh:
        fh.seek(info.header_offset)
        header = fh.read(30)  # the zip local file header: its name and extra field lengths end it
        if len(header) != 30 or header[:4] != b"PK\x03\x04":
            raise ValueError(f"{path}: no local header for {member}")
        name_length, extra_length = struct.unpack("<HH", header[26:30])
        start = info.header_offset + 30 + name_length + extra_length  # the member's bytes: the .npy file
        fh.seek(start)
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"{path}: .npy format {version} of {member}")
        offset = fh.tell()
    if offset + int(np.prod(shape)) * dtype.itemsize > start + info.file_size:
        raise ValueError(f"{path}: {member} is shorter than its header says")
    # Copy-on-write: the pages stay the file's (shared) while only read, and a write never reaches the cache.
    return np.memmap(path, dtype=dtype, mode="c", offset=offset, shape=shape, order="F" if fortran else "C")


def _save(tmp: Path, decoded: DecodedDomain) -> None:
    with tmp.open("wb") as fh:
        np.savez(fh, images=decoded.images.numpy(), sizes=decoded.sizes.numpy(), labels=decoded.labels.numpy())
