"""Choosing a checkpoint without target labels, measured: regret of `symnets select` and of single scores.

Trains a small grid per digits task on the CPU (tiny backbone, 32 px: the demo's shapes), keeping
every --keep-every-th checkpoint, ranks all candidates with ``symnets_deploy.selection.select``
(the rule of ``symnets select``) and prints, per task: the oracle (best candidate by target
labels), the selected candidate and its regret, the default run's last checkpoint, the source-only
run's last checkpoint, and the choice of each single score (source-val accuracy, V-measure,
entropy, IM, and SND as a negative control). Target labels only ever enter the oracle columns.

    python bench/selection.py                                   # MNIST->USPS and USPS->MNIST, about 6 min on 2 cores
    python bench/selection.py --iterations 40 --keep-every 20 --tasks mnist-usps   # smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np

from symnets_deploy.selection import select, spearman
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.trainer import train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "digits_mnist_usps"
#: The grid: (name, overrides). "default" is SymNets with the options tiny had by default then; source-only is always a candidate.
GRID = (
    ("source-only", {"method": "source-only", "lr": 0.1}),
    ("default", {"lr": 0.01}),  # the defaults of tiny when issue 16 measured this grid (lr 0.01, mirrored crops, no zoom)
    ("lr0.03", {"lr": 0.03}),
    ("lr0.1", {"lr": 0.1}),
    ("lr0.3", {"lr": 0.3}),
    ("lr0.1-gamma3", {"lr": 0.1, "lambda_gamma": 3.0}),
)
#: Single-score choices: (name, label-free key, higher is better).
SINGLE = (("source-val", "source_val_acc_ct", True), ("V-measure", "v_measure", True), ("entropy", "target_entropy", False),
          ("IM", "information_maximization", True), ("SND (control)", "snd", True))


def train_grid(args, source: str, target: str, root: Path) -> list[Path]:
    runs = []
    for name, overrides in GRID:
        out = root / f"{source}-{target}-{name}"
        config = TrainConfig(source=source, target=target, data_root=str(args.data_root), backbone="tiny", image_size=32, flip=True, zoom=1.0,
                             iterations=args.iterations, batch_size=32, device="cpu", seed=args.seed, out=str(out),
                             log_every=max(1, args.iterations // 10), eval_every=args.keep_every, keep_every=args.keep_every,
                             report=False, **overrides)
        clock = time.perf_counter()
        result = train(config)
        print(f"  trained {out.name}: {time.perf_counter() - clock:.0f} s, evaluation {result.evaluation_seconds:.1f} s of {result.seconds:.0f} s in the loop", flush=True)
        runs.append(out)
    return runs


def _pick(candidates, key: str, higher: bool):
    usable = [c for c in candidates if isinstance(c.scores.get(key), (int, float)) and math.isfinite(c.scores[key])]
    return max(usable, key=lambda c: c.scores[key] if higher else -c.scores[key]) if usable else None


def evaluate_task(runs: list[Path]) -> dict:
    selection = select(runs)
    cands = selection.candidates
    acc = lambda c: 100 * c.oracle_target_acc  # noqa: E731 (oracle only)
    oracle = max(cands, key=lambda c: c.oracle_target_acc)
    last = lambda name: max((c for c in cands if Path(c.run).name.endswith(name)), key=lambda c: c.iteration)  # noqa: E731
    row = {
        "candidates": len(cands), "oracle": acc(oracle), "selected": acc(selection.chosen),
        "selected_what": f"{Path(selection.chosen.run).name.split('-', 2)[-1]}@{selection.chosen.iteration}",
        "default_last": acc(last("-default")), "source_only_last": acc(last("-source-only")),
    }
    for name, key, higher in SINGLE:
        pick = _pick(cands, key, higher)
        row[name] = acc(pick) if pick else float("nan")
        rho = spearman([c.scores.get(key) for c in cands], [c.oracle_target_acc for c in cands])
        row[f"spearman {name}"] = float("nan") if rho is None else rho * (1 if higher else -1)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--tasks", default="mnist-usps,usps-mnist")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--keep-every", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="Keep the runs here (default: a temporary folder).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the rows as JSON.")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        for task in args.tasks.split(","):
            source, target = task.split("-")
            print(f"{source} -> {target}: training {len(GRID)} runs of {args.iterations} iterations", flush=True)
            rows[f"{source}->{target}"] = evaluate_task(train_grid(args, source, target, root))
    cols = ["oracle", "selected", "regret", "default last", "regret default", "source-only last", *(n for n, _, _ in SINGLE)]
    print("\n| task | candidates | " + " | ".join(cols) + " | selected |")
    print("|---" * (len(cols) + 3) + "|")
    for task, r in rows.items():
        values = [r["oracle"], r["selected"], r["oracle"] - r["selected"], r["default_last"], r["oracle"] - r["default_last"], r["source_only_last"],
                  *(r[n] for n, _, _ in SINGLE)]
        print(f"| {task} | {r['candidates']} | " + " | ".join(f"{v:.2f}" for v in values) + f" | {r['selected_what']} |")
    regrets = [r["oracle"] - r["selected"] for r in rows.values()]
    print(f"\nmean regret of select: {np.mean(regrets):.2f} points; of the default run's last checkpoint: "
          f"{np.mean([r['oracle'] - r['default_last'] for r in rows.values()]):.2f}; worst margin over source-only: "
          f"{min(r['selected'] - r['source_only_last'] for r in rows.values()):+.2f} points")
    print("Spearman of each score with target accuracy over all candidates (sign: higher = better by that score): " + "; ".join(
        f"{task}: " + ", ".join(f"{n} {r[f'spearman {n}']:+.2f}" for n, _, _ in SINGLE) for task, r in rows.items()))
    print("(accuracies in %, from target labels: used for these columns only, never for a choice)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
