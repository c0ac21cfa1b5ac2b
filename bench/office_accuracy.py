"""Office-Caltech-10 accuracy: SymNets vs source-only (and Table 4 ablations) on A/D/W tasks.

Trains every requested (task, method, seed), prints a Markdown table of last-iteration Ct
accuracy, and writes the runs machine-readable (the schema of docs/results.json).

    python bench/office_accuracy.py --data-root ../shared/data/office_caltech10 --device cuda \
        --iterations 1000 --batch-size 64 --json docs/results.json
    python bench/office_accuracy.py --data-root ../shared/data/office_caltech10 --device cpu \
        --iterations 2 --batch-size 4 --tasks A-W --json /tmp/results.json       # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from symnets_deploy.atomic import atomic_write
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.trainer import resolve_device, train

DOMAINS = {"A": "amazon", "D": "dslr", "W": "webcam"}
ALL_TASKS = ("A-W", "D-W", "W-D", "A-D", "D-A", "W-A")
ABLATIONS = ("no-ct-loss", "no-entropy", "no-confusion", "domain-confusion-only")


def run_one(args, task: str, method: str, seed: int, out_root: Path) -> dict:
    """Train one configuration and return its results.json row (accuracies in percent)."""
    s, t = task.split("-")
    ablation = method if method in ABLATIONS else "none"
    config = TrainConfig(
        source=DOMAINS[s], target=DOMAINS[t], data_root=args.data_root, backbone=args.backbone,
        method="source-only" if method == "source-only" else "symnets", ablation=ablation,
        iterations=args.iterations, batch_size=args.batch_size, device=args.device, seed=seed,
        out=str(out_root / f"{task}-{method}-{seed}"), log_every=max(1, args.iterations // 10),
        source_val=0.0,  # the paper's protocol: train on every source image
    )
    r = train(config)
    device = resolve_device(args.device)
    return {
        "task": task.replace("-", "->"), "method": method, "seed": seed,
        "acc_ct": round(100 * (r.target_acc_cs if ablation == "no-ct-loss" else r.target_acc_ct), 2),
        "acc_cs": round(100 * r.target_acc_cs, 2), "iterations": r.iterations, "batch_size": args.batch_size,
        "backbone": args.backbone, "seconds": r.seconds, "images_per_s": r.images_per_s,
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (CPU)",
        "torch": torch.__version__, "commit": os.environ.get("SYMNETS_COMMIT", "unknown"), "step": r.step,
        **({"data": args.data_note} if args.data_note else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--tasks", default=",".join(ALL_TASKS), help="comma list like A-W,D-A")
    parser.add_argument("--methods", default="symnets,source-only", help=f"symnets, source-only, {', '.join(ABLATIONS)}")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default=None, help="write the rows here (appending to rows already there)")
    parser.add_argument("--keep", type=Path, default=None, help="copy each run's config.json, metrics.jsonl and summary.json here")
    parser.add_argument("--data-note", default="", help="how the images were prepared, recorded in each row")
    args = parser.parse_args()
    rows = []
    existing = json.loads(Path(args.json).read_text()) if args.json and Path(args.json).is_file() else []
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks.split(","):
            for method in args.methods.split(","):
                for seed in (int(s) for s in args.seeds.split(",")):
                    rows.append(run_one(args, task, method, seed, Path(tmp)))
                    if args.keep:
                        run = Path(tmp) / f"{task}-{method}-{seed}"
                        (args.keep / run.name).mkdir(parents=True, exist_ok=True)
                        for name in ("config.json", "metrics.jsonl", "summary.json"):
                            shutil.copy(run / name, args.keep / run.name / name)
                    print(json.dumps(rows[-1]), flush=True)
                    if args.json:  # after every run, so a cut-off job keeps what it measured
                        atomic_write(Path(args.json), lambda p: p.write_text(json.dumps(existing + rows, indent=1) + "\n"))
    print("\n| task | method | seed | acc Ct % | acc Cs % | seconds | images/s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['method']} | {r['seed']} | {r['acc_ct']:.1f} | {r['acc_cs']:.1f} | {r['seconds']:.1f} | {r['images_per_s']:.0f} |")


if __name__ == "__main__":
    main()
