"""The decoded-domain disk cache: equal to a fresh decode, invalidated by any file change."""

from __future__ import annotations

import os
import shutil

import torch
from PIL import Image

from symnets_deploy.train.cache import cache_file, load_or_decode
from symnets_deploy.train.data import decode_domain, scan_domain


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
