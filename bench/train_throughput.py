"""Training throughput: (a) the model alone vs (b) full `symnets train` iterations. Prints a table.

(a) forward + backward + SGD step of G + head on random tensors with the training shapes
(B source + B target, separate forward passes, both SymNets losses); (b) real iterations of
``train()`` on a dataset (sampling, GPU crops/flips, losses, updates), timed from its
metrics log after a warm-up window. Target: (b) >= 0.85 x (a).

    python bench/train_throughput.py --data-root ../shared/data/office_caltech10 --device cuda
    python bench/train_throughput.py --data-root ../shared/data/digits_mnist_usps --source mnist --target usps \
        --backbone tiny --image-size 32 --device cpu --iterations 30 --warmup 10   # CPU smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from symnets_deploy.enums import Method
from symnets_deploy.train.checkpoint import build_model
from symnets_deploy.train.config import TrainConfig
from symnets_deploy.train.placement import select_data_path
from symnets_deploy.train.step import make_optimizer, training_step
from symnets_deploy.train.trainer import resolve_device, train


def model_only(config: TrainConfig, num_classes: int, warmup: int, iterations: int) -> float:
    """Images/s of forward+backward+step on random inputs (the upper bound for (b))."""
    device = resolve_device(config.device)
    placement = select_data_path(device)
    torch.backends.cudnn.benchmark = True
    model = build_model(config, num_classes).to(device, memory_format=placement.memory_format()).train()
    optimizer = make_optimizer(model, config)
    shape = (config.batch_size, 3, config.image_size, config.image_size)
    x_s = (torch.rand(shape, device=device) * 255).contiguous(memory_format=placement.memory_format())
    x_t = (torch.rand(shape, device=device) * 255).contiguous(memory_format=placement.memory_format())
    y_s = torch.randint(0, num_classes, (config.batch_size,), device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with placement.autocast():
            training_step(model, x_s, y_s, x_t if config.method == Method.symnets else None, 0.5, config)
        optimizer.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_iter = config.batch_size * (2 if config.method == Method.symnets else 1)
    return iterations * per_iter / (time.perf_counter() - start)


def full_training(config: TrainConfig, warmup: int) -> tuple[float, dict]:
    """Images/s of real ``train()`` iterations after the first (warm-up) log window."""
    summary = train(config)
    records = [json.loads(line) for line in (Path(config.out) / "metrics.jsonl").read_text().splitlines()]
    windows = [r for r in records if "images_per_s" in r and r["iteration"] > warmup]
    per_iter = config.batch_size * (2 if config.method == Method.symnets else 1)
    images = sum(per_iter * (r["iteration"] - prev) for prev, r in zip([warmup] + [w["iteration"] for w in windows], windows))
    seconds = sum(per_iter * (r["iteration"] - prev) / r["images_per_s"] for prev, r in zip([warmup] + [w["iteration"] for w in windows], windows))
    return images / seconds, {"acc_ct": summary.target_acc_ct, "seconds": summary.seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--source", default="amazon")
    parser.add_argument("--target", default="webcam")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--iterations", type=int, default=200, help="timed iterations")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            source=args.source, target=args.target, data_root=args.data_root, backbone=args.backbone,
            batch_size=args.batch_size, image_size=args.image_size, iterations=args.warmup + args.iterations,
            device=args.device, out=out, log_every=args.warmup, eval_every=0, checkpoint_every=0,
        )
        num_classes = len([p for p in (Path(args.data_root) / args.source).iterdir() if p.is_dir()])
        a = model_only(config, num_classes, args.warmup, args.iterations)
        b, extra = full_training(config, args.warmup)
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\n{args.backbone}, {args.batch_size}+{args.batch_size} images/iteration, {args.source}->{args.target}, {name}, torch {torch.__version__}")
    print("| measurement | images/s | vs (a) |")
    print("|---|---|---|")
    print(f"| (a) model alone (fwd+bwd+SGD, random tensors) | {a:,.0f} | 1.00 |")
    print(f"| (b) full symnets train iterations | {b:,.0f} | {b / a:.2f} |")
    print(f"\ntarget (b) >= 0.85 x (a): {'met' if b >= 0.85 * a else 'NOT met'}; run: {extra['seconds']:.1f}s, final target acc Ct {100 * extra['acc_ct']:.1f}%")


if __name__ == "__main__":
    main()
