"""``symnets demo``: the whole pipeline on a small built-in dataset, on a laptop CPU, in about a minute."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.enums import Device


#: Label-free rows of the demo's table: (label, ``summary.json`` ``label_free`` key).
LABEL_FREE_ROWS = (
    ("held-out source accuracy (Ct)", "source_val_acc_ct"), ("cluster V-measure", "v_measure"),
    ("mean confidence", "target_mean_confidence"), ("IM diversity", "im_diversity"), ("smallest class share", "smallest_class_share"),
)


def _score(scores: dict, key: str) -> str:
    value = scores.get(key)
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if key == "source_val_acc_ct" else f"{value:.3f}"


@command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("symnets-demo"), help="Folder for the dataset, both runs, the model and the predictions."),
    iterations: int = typer.Option(80, metavar="N", help="Training iterations of each run (16 + 16 images each)."),
    device: Device = typer.Option(Device.auto, help="auto picks CUDA when present."),
) -> None:
    """Show what adaptation buys on a generated two-domain dataset (studio -> street shapes).

    Trains efficientnet_lite0 twice on the labeled studio images, once as the source-only baseline and once with SymNets using the unlabeled street images, then exports the SymNets model to ONNX with its equivalence check, predicts every street image with it through ONNX Runtime (no PyTorch in that step), draws the run's report (with the \\[report] extra) and prints one table.
    """
    from symnets_deploy.cli.progress import TrainProgress, console
    from symnets_deploy.export.api import ExportConfig, run_export
    from symnets_deploy.inputs import scan_folder
    from symnets_deploy.predictor import Predictor
    from symnets_deploy.report import extra_installed, write_run_report
    from symnets_deploy.train.config import TrainConfig
    from symnets_deploy.train.synthetic import make_dataset
    from symnets_deploy.train.trainer import train
    from symnets_deploy.writers import write_predictions

    started, seconds = time.perf_counter(), {}

    def stage(name: str, clock: float) -> float:
        seconds[name] = time.perf_counter() - clock
        return time.perf_counter()

    clock = started
    data = out / "data"
    if not (data / "street").is_dir():
        console.log(f"1/6 generating the built-in dataset in {data}")
        make_dataset(data)
    clock = stage("generate", clock)
    common = dict(source="studio", target="street", data_root=str(data), backbone="efficientnet_lite0", image_size=96,
                  iterations=iterations, batch_size=16, device=device.value, log_every=10)
    console.log("2/6 training the source-only baseline (labeled studio images only)")
    baseline = train(TrainConfig(**common, method="source-only", report=False, out=str(out / "run_source_only")), TrainProgress(), overwrite=True)
    clock = stage("train source-only", clock)
    console.log("3/6 training SymNets (labeled studio + unlabeled street images)")
    result = train(TrainConfig(**common, out=str(out / "run")), TrainProgress(), overwrite=True)
    clock = stage("train SymNets", clock)
    console.log("4/6 exporting to ONNX and checking it against PyTorch on the street images")
    exported = run_export(ExportConfig(checkpoint=str(out / "run" / "last.pt")))  # run/model.onnx: the report lists the run's artifacts
    clock = stage("export + check", clock)
    console.log("5/6 predicting every street image through ONNX Runtime")
    paths = scan_folder(data / "street")
    predict_start = time.perf_counter()
    with Predictor.load(exported.artifact, device="cpu") as predictor:
        predictions = predictor.predict_paths(paths)
    rate = len(predictions) / (time.perf_counter() - predict_start)
    write_predictions(predictions, out / "predictions.csv")
    clock = stage("predict", clock)
    report = None
    if extra_installed():
        console.log("6/6 drawing the report of the SymNets run")
        report = write_run_report(out / "run", compare=[out / "run_source_only"]).html  # the table below, on the page too
        clock = stage("report", clock)
    correct = sum(p.label == Path(p.path).parent.name for p in predictions)
    check = exported.report.comparisons[0].outputs["logits"]
    lines = [
        "",
        "| street images (unlabeled in training) | source-only | SymNets |",
        "|---|---|---|",
        f"| target accuracy (Ct, {result.target_images} images; labels used to evaluate only) | {100 * baseline.target_acc_ct:.1f} % | {100 * result.target_acc_ct:.1f} % |",
        *(f"| {label} (no target label) | {_score(baseline.label_free, key)} | {_score(result.label_free, key)} |" for label, key in LABEL_FREE_ROWS),
        "",
        f"ONNX check: {'passed' if exported.report else 'FAILED'} on {exported.report.num_images} images (max |logit diff| {check.max_abs:.1e}, top-1 agreement {100 * check.top1_agree:.1f} %)",
        f"ONNX Runtime predictions: {correct}/{len(predictions)} correct, {rate:.0f} images/s (decode + preprocess + inference, CPU)",
        "seconds: " + ", ".join(f"{name} {value:.1f}" for name, value in seconds.items()) + f" | total {time.perf_counter() - started:.1f}",
        f"wrote: {out / 'run'} (SymNets run, with {exported.artifact.name}), {out / 'run_source_only'}, {out / 'predictions.csv'}"
        + (f", {report}" if report else " (no report: pip install 'symnets-deploy[report]')"),
    ]
    typer.echo("\n".join(lines))
