"""Host memory of a multi-process CPU training (issue 19, item 8). Prints one table.

Runs ``symnets train --nproc N --device cpu`` (tiny backbone, default 224 px, amazon -> webcam by default)
twice with a fresh decode cache: ``cold`` (the images are decoded) and ``warm`` (they come from the cache).
While each runs it samples ``/proc/PID/smaps_rollup`` of every training process every 0.1 s and reports
the peaks: RSS (counts the pages of a shared mapping in every process that touches them), PSS (shares
them out: the sum over the processes is what the machine holds) and private memory (the pages only that
process holds: a decoded copy of its own lands here).

    python bench/host_memory.py --data-root ../shared/data/office_caltech10 --nproc 2

Before commit 'one decoded copy per machine' every rank decoded (or loaded) its own copy of both domains.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIELDS = ("Rss", "Pss", "Private_Clean", "Private_Dirty")


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (the launcher's workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def _memory(pid: int) -> dict[str, int]:
    """kB of each of ``FIELDS`` (empty when the process is gone)."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:
        return {}
    values = {}
    for line in lines:
        name, _, rest = line.partition(":")
        if name in FIELDS:
            values[name] = int(rest.split()[0])
    return values


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _run(args, out: Path, cache: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "symnets_deploy.cli", "train", "--source", args.source, "--target", args.target,
               "--data-root", str(args.data_root), "--backbone", "tiny", "--image-size", "224", "--iterations", str(args.iterations),
               "--batch-size", "32", "--device", "cpu", "--nproc", str(args.nproc), "--seed", "0", "--out", str(out),
               "--no-report", "--eval-every", "0"]
    launcher = subprocess.Popen(command, env={**os.environ, "SYMNETS_CACHE_DIR": str(cache)},
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_rss: dict[int, int] = {}
    peak_private: dict[int, int] = {}
    peak_pss_sum = 0
    while launcher.poll() is None:
        workers = [p for p in _children(launcher.pid) if " train " in _cmdline(p) or "symnets" in _cmdline(p)]
        pss_sum = 0
        for pid in workers:
            m = _memory(pid)
            if not m:
                continue
            peak_rss[pid] = max(peak_rss.get(pid, 0), m["Rss"])
            peak_private[pid] = max(peak_private.get(pid, 0), m["Private_Clean"] + m["Private_Dirty"])
            pss_sum += m["Pss"]
        peak_pss_sum = max(peak_pss_sum, pss_sum)
        time.sleep(0.1)
    if launcher.returncode != 0:
        raise SystemExit(f"training failed (exit {launcher.returncode}): {launcher.stderr.read().decode()[-2000:]}")
    mib = 1024
    pids = sorted(peak_rss)  # the launcher starts rank 0 first
    return {"rss": [peak_rss[p] / mib for p in pids], "private": [peak_private[p] / mib for p in pids], "pss_sum": peak_pss_sum / mib}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--source", default="amazon")
    parser.add_argument("--target", default="webcam")
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        for name in ("cold", "warm"):
            rows.append((name, _run(args, Path(tmp) / name, cache)))
    print("| cache | peak RSS per process (MiB) | peak private memory per process (MiB) | peak PSS, all processes (MiB) |")
    print("|---|---|---|---|")
    for name, r in rows:
        print(f"| {name} | {' / '.join(f'{v:.0f}' for v in r['rss'])} | {' / '.join(f'{v:.0f}' for v in r['private'])} | {r['pss_sum']:.0f} |")


if __name__ == "__main__":
    main()
