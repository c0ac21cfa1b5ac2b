"""Training on a CPU that other jobs share (issue 19, item 10). Prints one table.

The same ``symnets train`` (mnist -> usps, tiny backbone, 32 px, 300 iterations by default) runs on a
quiet machine and beside K single-thread busy loops, each under a given environment. The loop's seconds
come from the run's own ``summary.json`` (training only), the wall time from the process.

    python bench/cpu_contention.py --data-root ../shared/data/digits_mnist_usps --busy 4
    python bench/cpu_contention.py ... --env "OMP_NUM_THREADS=1" --env "GOMP_SPINCOUNT=10000"   # more rows, other settings

Before train/threads.py (commit fe7e039 and earlier) training kept every intra-op thread whatever the load.

A fair share of C cores among T busy threads is about T / C times the quiet time.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _spin() -> None:
    while True:
        pass


def _train(args, env: dict[str, str], out: Path) -> tuple[float, float]:
    command = [sys.executable, "-m", "symnets_deploy.cli", "train", "--source", args.source, "--target", args.target,
               "--data-root", str(args.data_root), "--backbone", "tiny", "--image-size", "32", "--iterations", str(args.iterations),
               "--batch-size", "32", "--device", "cpu", "--seed", "0", "--out", str(out), "--no-report", "--eval-every", "0"]
    start = time.perf_counter()
    subprocess.run(command, env={**os.environ, **env}, check=True, capture_output=True)
    wall = time.perf_counter() - start
    return json.loads((out / "summary.json").read_text())["seconds"], wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--source", default="mnist")
    parser.add_argument("--target", default="usps")
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--busy", type=int, default=4, help="single-thread busy loops beside the training")
    parser.add_argument("--env", action="append", default=[], help="'NAME=VALUE [NAME=VALUE...]' for the training process; one row per --env")
    args = parser.parse_args()
    settings = [{}] + [dict(pair.split("=", 1) for pair in item.split()) for item in args.env]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        _train(args, {}, Path(tmp) / "warm")  # fills the decode cache: every row decodes nothing
        for env in settings:
            name = " ".join(f"{k}={v}" for k, v in env.items()) or "default"
            quiet = _train(args, env, Path(tmp) / f"quiet-{len(rows)}")
            spinners = [mp.Process(target=_spin, daemon=True) for _ in range(args.busy)]
            for p in spinners:
                p.start()
            try:
                busy = _train(args, env, Path(tmp) / f"busy-{len(rows)}")
            finally:
                for p in spinners:
                    p.terminate()
            rows.append((name, quiet, busy))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"{args.iterations} iterations, {cores} cores, {args.busy} busy loops beside (fair share about {(args.busy + cores) / cores:.1f}x)")
    print("| environment | quiet loop s | busy loop s | loop slowdown | quiet wall s | busy wall s | wall slowdown |")
    print("|---|---|---|---|---|---|---|")
    for name, (q_loop, q_wall), (b_loop, b_wall) in rows:
        print(f"| {name} | {q_loop:.1f} | {b_loop:.1f} | {b_loop / q_loop:.1f}x | {q_wall:.1f} | {b_wall:.1f} | {b_wall / q_wall:.1f}x |")


if __name__ == "__main__":
    main()
