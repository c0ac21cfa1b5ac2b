"""One cache root for every cache, and the usable-core count."""

from __future__ import annotations

import os

from symnets_deploy.host import cache_root, usable_cpus


def test_cache_root_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cache_root() == tmp_path / "symnets-deploy"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == tmp_path.home() / ".cache" / "symnets-deploy"


def test_decoded_cache_and_timing_cache_live_under_the_root(monkeypatch, tmp_path):
    from symnets_deploy.export.trt import default_timing_cache
    from symnets_deploy.gpu import CudaDevice
    from symnets_deploy.train.cache import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SYMNETS_CACHE_DIR", raising=False)
    assert default_cache_dir() == tmp_path / "symnets-deploy" / "decoded"
    assert default_timing_cache("10.9.0", CudaDevice("H100", "9.0")).parent == tmp_path / "symnets-deploy"


def test_usable_cpus_is_within_the_machine():
    assert 1 <= usable_cpus() <= (os.cpu_count() or 1)
