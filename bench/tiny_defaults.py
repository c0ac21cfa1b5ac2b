"""The tiny backbone's defaults on digits: MNIST->USPS, SymNets and source-only, over seeds (issue 19 item 14).

Trains every (method, seed) with the defaults (``--image-size``, ``--lr``, ``--flip``, ``--zoom``: the backbone's unless given here)
on the CPU and prints a Markdown table: target Ct accuracy (an oracle: it reads USPS's class folders, which
no choice here uses), held-out source accuracy (label-free), seconds; then mean and spread per method.

    python bench/tiny_defaults.py                                  # 1000 iterations, seeds 0,1,2: about 1 min on 2 cores
    python bench/tiny_defaults.py --image-size 224 --lr 0.01 --flip --zoom 1   # the defaults before issue 19 item 14 (slower)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.trainer import train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "digits_mnist_usps"
METHODS = ("symnets", "source-only")


def run_one(data_root: Path, method: str, seed: int, iterations: int, out: Path, **overrides) -> dict:
    """Train one run with the defaults (bar the given overrides); its table row, accuracies in percent."""
    config = TrainConfig(
        source="mnist", target="usps", data_root=str(data_root), backbone="tiny", method=method, iterations=iterations,
        seed=seed, device="cpu", out=str(out), log_every=max(1, iterations // 10), **overrides,
        cache=False, report=False,
    )
    clock = time.perf_counter()
    result = train(config)
    return {
        "method": method, "seed": seed, "ct": 100 * result.target_acc_ct, "source_val": 100 * result.label_free["source_val_acc_ct"],
        "seconds": time.perf_counter() - clock, "lr": config.lr, "image_size": config.image_size, "batch_size": config.batch_size,
        "flip": config.flip, "zoom": config.zoom,
    }


def spread(values: list[float]) -> str:
    """``mean ± sample standard deviation (min-max)``."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {sd:.2f} ({min(values):.2f}-{max(values):.2f})"


def table(rows: list[dict]) -> str:
    """The Markdown table of every run, then one mean-and-spread row per method."""
    lines = ["| method | seed | Ct oracle % | held-out source % | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['seed']} | {r['ct']:.2f} | {r['source_val']:.2f} | {r['seconds']:.1f} |" for r in rows]
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        lines.append(f"| **{method}** | mean ± sd (min-max) | {spread([r['ct'] for r in mine])} | "
                     f"{spread([r['source_val'] for r in mine])} | {statistics.mean(r['seconds'] for r in mine):.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA, help="holds mnist/ and usps/ (default: %(default)s)")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--seeds", default="0,1,2", help="comma list")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma list of symnets, source-only")
    parser.add_argument("--lr", type=float, default=None, help="override the backbone's default lr")
    parser.add_argument("--image-size", type=int, default=None, help="override the backbone's default crop side")
    parser.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None, help="override the backbone's default mirroring")
    parser.add_argument("--zoom", type=float, default=None, help="override the backbone's default zoom-in")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method in args.methods.split(","):
            for seed in (int(s) for s in args.seeds.split(",")):
                rows.append(run_one(args.data_root, method, seed, args.iterations, Path(tmp) / f"{method}-{seed}",
                                    lr=args.lr, image_size=args.image_size, flip=args.flip, zoom=args.zoom))
                r = rows[-1]
                print(f"  {method} seed {seed}: Ct {r['ct']:.2f} %, held-out source {r['source_val']:.2f} %, {r['seconds']:.1f} s", flush=True)
    first = rows[0]
    print(f"\ntiny, mnist->usps, {args.iterations} iterations, batch {first['batch_size']} + {first['batch_size']}, "
          f"image size {first['image_size']}, lr {first['lr']}, flip {first['flip']}, zoom {first['zoom']}, CPU\n")
    print(table(rows))


if __name__ == "__main__":
    main()
