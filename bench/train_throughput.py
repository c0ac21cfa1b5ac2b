"""Training throughput with an honest bound (issue 10). Prints one table.

(a) the eager step alone: forward of both domains, both losses, backward and SGD on random
    tensors with the training shapes, launched op by op (what ``--no-cuda-graph`` runs);
(b) the CUDA-graph step alone (``train.step.GraphedStep``): the same iteration replayed as one
    graph; on a CPU its body runs eagerly (no capture), so (b) ~ (a) there;
(b2) ``torch.compile(mode="reduce-overhead")`` of the same step (CUDA only, or ``--compile-cpu``),
    the other maintained mechanism, for comparison;
(c) a whole ``symnets train`` process on real folders: steady images/s after the first log
    window, seconds to the 10th iteration, the loop, and the process wall time.
Every row also gives the seconds to its 10th iteration (warm-up). On CUDA, a check row compares
20 graphed iterations with 20 eager ones from the same weights (loss and weights, bf16 autocast).

    python bench/train_throughput.py --data-root ../shared/data/office_caltech10 --device cuda
    python bench/train_throughput.py --data-root ../shared/data/digits_mnist_usps --source mnist --target usps \\
        --backbone tiny --image-size 32 --batch-size 16 --device cpu --iterations 30 --train-iterations 60   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from symnets_deploy.enums import Method
from symnets_deploy.train.checkpoint import build_model
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.placement import select_data_path
from symnets_deploy.train.step import EagerStep, GraphedStep, make_optimizer, training_step
from symnets_deploy.train.trainer import resolve_device

WARMUP_WINDOW = 10  # "warm-up": seconds until the end of this iteration


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(config: TrainConfig, num_classes: int, device: torch.device, seed: int = 0):
    placement = select_data_path(device)
    g = torch.Generator(device="cpu").manual_seed(seed)
    shape = (config.batch_size, 3, config.image_size, config.image_size)
    x_s, x_t = ((torch.rand(shape, generator=g) * 255).to(device).contiguous(memory_format=placement.memory_format()) for _ in range(2))
    y_s = torch.randint(0, num_classes, (config.batch_size,), generator=g).to(device)
    return x_s, y_s, x_t if config.method == Method.symnets else None


def _step(kind: str, config: TrainConfig, num_classes: int, device: torch.device):
    """(model, step callable) for kind ``eager``, ``graph`` or ``compile``, from the same seeded weights."""
    placement = select_data_path(device)
    torch.manual_seed(0)
    model = build_model(config, num_classes).to(device, memory_format=placement.memory_format()).train()
    if kind == "eager":
        return model, EagerStep(model, make_optimizer(model, config), config, placement)
    if kind == "graph":
        return model, GraphedStep(model, make_optimizer(model, config, fused=True), config, placement, capture=device.type == "cuda")
    optimizer = make_optimizer(model, config)
    forward = torch.compile(lambda x_s, y_s, x_t, lam: training_step(model, x_s, y_s, x_t, lam, config), mode="reduce-overhead" if device.type == "cuda" else "default")
    update = torch.compile(optimizer.step)

    def compiled(x_s, y_s, x_t, lam, lrs):
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        with placement.autocast():
            terms = forward(x_s, y_s, x_t, lam)
        update()
        return terms

    return model, compiled


def step_alone(kind: str, config: TrainConfig, num_classes: int, iterations: int, *, cudnn_benchmark: bool = True) -> tuple[float, float]:
    """(images/s after the warm-up window, seconds to the end of iteration 10) of one step kind.

    ``cudnn_benchmark``: as the trainer sets it on CUDA (autotuning every convolution shape at its
    first use, a suspect for the long warm-up); False measures cuDNN's heuristics instead.
    """
    device = resolve_device(config.device)
    torch.backends.cudnn.benchmark = device.type == "cuda" and cudnn_benchmark
    _model, step = _step(kind, config, num_classes, device)
    x_s, y_s, x_t = _inputs(config, num_classes, device)
    lrs = [config.lr, config.lr * config.backbone_lr_mult]
    _sync(device)
    start = time.perf_counter()
    for _ in range(WARMUP_WINDOW):
        step(x_s, y_s, x_t, 0.5, lrs)
    _sync(device)
    warmup = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iterations):
        step(x_s, y_s, x_t, 0.5, lrs)
    _sync(device)
    per_iter = config.batch_size * (2 if config.method == Method.symnets else 1)
    return iterations * per_iter / (time.perf_counter() - start), warmup


def graph_check(config: TrainConfig, num_classes: int, iterations: int = 20) -> str:
    """Largest relative loss difference and weight difference after ``iterations`` graphed vs eager steps."""
    device = resolve_device(config.device)
    runs = []
    for kind in ("eager", "graph"):
        model, step = _step(kind, config, num_classes, device)
        losses = []
        for it in range(iterations):
            x_s, y_s, x_t = _inputs(config, num_classes, device, seed=it)
            losses.append(float(step(x_s, y_s, x_t, 0.5, [config.lr, config.lr * config.backbone_lr_mult])["total" if config.method != Method.symnets else "cls_total"]))
        runs.append((losses, [p.detach().float().clone() for p in model.parameters()]))
    (la, pa), (lb, pb) = runs
    loss_diff = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(la, lb))
    weight_diff = max(float((a - b).abs().max() / a.abs().max().clamp_min(1e-12)) for a, b in zip(pa, pb))
    captured = "captured" if isinstance(step, GraphedStep) and step.graph is not None else f"NOT captured ({getattr(step, 'fallback', None)})"
    return f"graph {captured}; {iterations} iterations: max rel. loss diff {loss_diff:.2e}, max rel. weight diff {weight_diff:.2e}"


def whole_process(args, out: Path) -> dict:
    """Run ``symnets train`` as a user does; times from its metrics log and the wall clock."""
    command = [
        sys.executable, "-m", "symnets_deploy.cli", "train", "--source", args.source, "--target", args.target, "--data-root", args.data_root,
        "--backbone", args.backbone, "--batch-size", str(args.batch_size), "--iterations", str(args.train_iterations),
        "--device", args.device, "--seed", "0", "--log-every", str(WARMUP_WINDOW), "--out", str(out), *args.train_args,
    ]
    if args.image_size:
        command += ["--image-size", str(args.image_size)]
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"symnets train failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "images_per_s" in r]
    per_iter = args.batch_size * 2
    seconds = [(r["iteration"] - prev) * per_iter / r["images_per_s"] for prev, r in zip([0] + [s["iteration"] for s in steps], steps)]
    steady = sum((r["iteration"] - prev) * per_iter for prev, r in zip([s["iteration"] for s in steps], steps[1:])) / sum(seconds[1:]) if len(steps) > 1 else float("nan")
    summary = json.loads((out / "summary.json").read_text())
    return {"steady": steady, "warmup": seconds[0], "loop": summary["seconds"], "wall": wall, "acc": summary["target_acc_ct"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--source", default="amazon")
    parser.add_argument("--target", default="webcam")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=200, help="timed iterations of the step-alone rows")
    parser.add_argument("--train-iterations", type=int, default=1000, help="iterations of the whole symnets train row")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile-cpu", action="store_true", help="also time torch.compile on a CPU (slow to compile)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row, also on CUDA")
    parser.add_argument("--no-train", action="store_true", help="skip the whole symnets train row (c)")
    parser.add_argument("--random-init", action="store_true", help="random backbone weights (speed only; resnet50's ImageNet weights need a download)")
    parser.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra symnets train options, e.g. --no-cuda-graph")
    args = parser.parse_args()
    device = resolve_device(args.device)
    num_classes = len([p for p in (Path(args.data_root) / args.source).iterdir() if p.is_dir()])
    config = TrainConfig(source=args.source, target=args.target, data_root=args.data_root, backbone=args.backbone,
                         batch_size=args.batch_size, image_size=args.image_size, device=args.device, out="unused",
                         **({"weights": None} if args.random_init else {}))
    rows = [("(a) eager step alone (random tensors)", *step_alone("eager", config, num_classes, args.iterations))]
    label = "(b) CUDA-graph step alone" if device.type == "cuda" else "(b) CUDA-graph step body, not captured (CPU)"
    rows.append((label, *step_alone("graph", config, num_classes, args.iterations)))
    if device.type == "cuda":
        rows.append(("(b) CUDA-graph step alone, cudnn.benchmark off", *step_alone("graph", config, num_classes, args.iterations, cudnn_benchmark=False)))
    if (device.type == "cuda" or args.compile_cpu) and not args.no_compile:
        mode = "reduce-overhead" if device.type == "cuda" else "default, CPU"
        rows.append((f"(b2) torch.compile (mode {mode}) step alone", *step_alone("compile", config, num_classes, args.iterations)))
    run = None
    if not args.no_train:
        with tempfile.TemporaryDirectory() as tmp:
            run = whole_process(args, Path(tmp) / "run")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{args.backbone}, {args.batch_size}+{args.batch_size} images/iteration, {args.source}->{args.target}, {name}, torch {torch.__version__}")
    print("| measurement | images/s | vs (a) | s to iteration 10 |")
    print("|---|---|---|---|")
    for label, rate, warmup in rows:
        print(f"| {label} | {rate:,.0f} | {rate / rows[0][1]:.2f} | {warmup:.2f} |")
    if run is not None:
        print(f"| (c) whole symnets train, {args.train_iterations} iterations (steady) | {run['steady']:,.0f} | {run['steady'] / rows[0][1]:.2f} | {run['warmup']:.2f} |")
        print(f"\n(c): loop {run['loop']:.1f} s, process wall {run['wall']:.1f} s, target acc Ct {100 * run['acc']:.2f} %")
    if device.type == "cuda":
        print(f"check: {graph_check(config, num_classes)}")


if __name__ == "__main__":
    main()
