"""The decoded-domain disk cache: equal to a fresh decode, invalidated by any file change, read as a memory map."""

from __future__ import annotations

import os
import shutil

import torch
from PIL import Image

from symnets_deploy.train.cache import cache_file, load_or_decode
from symnets_deploy.train.data import decode_domain, scan_domain

from .memory_maps import backing_file


def _assert_same(a, b):
    assert torch.equal(a.images, b.images)
    assert torch.equal(a.sizes, b.sizes)
    assert torch.equal(a.labels, b.labels)


def test_cached_domain_equals_fresh_decode(shapes_root, tmp_path):
    domain = scan_domain(shapes_root, "photos")
    first, hit1 = load_or_decode(domain, 37, cache_dir=tmp_path)
    second, hit2 = load_or_decode(domain, 37, cache_dir=tmp_path)
    assert (hit1, hit2) == (False, True)
    _assert_same(second, decode_domain(domain, 37))
    _assert_same(first, second)
    assert cache_file(domain, 37, tmp_path).is_file()


def test_changed_file_invalidates_cache(shapes_root, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(shapes_root, root)
    cache = tmp_path / "cache"
    domain = scan_domain(root, "photos")
    before, _ = load_or_decode(domain, 37, cache_dir=cache)
    victim = domain.samples[0][0]
    Image.new("RGB", (50, 50), (0, 255, 0)).save(victim)
    os.utime(victim, ns=(1, 1))  # a different mtime even on coarse-grained file systems
    changed = scan_domain(root, "photos")
    after, hit = load_or_decode(changed, 37, cache_dir=cache)
    assert not hit
    assert not torch.equal(before.images[0], after.images[0])
    _assert_same(after, decode_domain(changed, 37))
    assert len(list(cache.glob("photos-*.npz"))) == 1  # the stale entry is gone


def test_resize_is_part_of_the_key(shapes_root, tmp_path):
    domain = scan_domain(shapes_root, "photos")
    assert cache_file(domain, 37, tmp_path) != cache_file(domain, 64, tmp_path)


def test_damaged_cache_entry_is_rebuilt(shapes_root, tmp_path):
    domain = scan_domain(shapes_root, "photos")
    load_or_decode(domain, 37, cache_dir=tmp_path)
    cache_file(domain, 37, tmp_path).write_bytes(b"not an npz")
    again, hit = load_or_decode(domain, 37, cache_dir=tmp_path)
    assert not hit
    _assert_same(again, decode_domain(domain, 37))


def test_the_images_are_the_cache_files_pages_not_a_copy(shapes_root, tmp_path):
    """Training reads the images through a map of the cache file, so processes share one copy (issue 19 item 8)."""
    domain = scan_domain(shapes_root, "photos")
    path = cache_file(domain, 37, tmp_path)
    written, _ = load_or_decode(domain, 37, cache_dir=tmp_path)  # just decoded: the copy is dropped for the file
    read, _ = load_or_decode(domain, 37, cache_dir=tmp_path)
    for decoded in (written, read):
        assert backing_file(decoded.images) == (path.stat().st_ino, str(path))
    read.images[0, 0, 0, 0] += 1  # a write stays in this process: the cache is never changed through the map
    _assert_same(load_or_decode(domain, 37, cache_dir=tmp_path)[0], decode_domain(domain, 37))


def test_a_truncated_cache_entry_is_rebuilt(shapes_root, tmp_path):
    domain = scan_domain(shapes_root, "photos")
    load_or_decode(domain, 37, cache_dir=tmp_path)
    path = cache_file(domain, 37, tmp_path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    again, hit = load_or_decode(domain, 37, cache_dir=tmp_path)
    assert not hit
    _assert_same(again, decode_domain(domain, 37))
