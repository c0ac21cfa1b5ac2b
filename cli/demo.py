"""``symnets demo``: the whole pipeline on a small built-in dataset, on a laptop CPU, in minutes."""

from __future__ import annotations

from pathlib import Path

import typer

from symnets_deploy.cli.main import command, handle_errors
from symnets_deploy.enums import Device


@command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("symnets-demo"), help="Folder for the generated dataset, the run, the ONNX model and the predictions."),
    iterations: int = typer.Option(80, help="Training iterations (16 + 16 images each)."),
    device: Device = typer.Option(Device.auto, help="auto picks CUDA when present."),
) -> None:
    """Generate a two-domain dataset (studio -> street shapes), adapt efficientnet_lite0 with SymNets,
    export and verify an ONNX model, and predict every street image with it (no PyTorch in that step)."""
    from symnets_deploy.cli.progress import TrainProgress, console
    from symnets_deploy.export.api import ExportConfig, run_export
    from symnets_deploy.inputs import scan_folder
    from symnets_deploy.predictor import Predictor
    from symnets_deploy.train.config import TrainConfig
    from symnets_deploy.train.synthetic import make_dataset
    from symnets_deploy.train.trainer import train
    from symnets_deploy.writers import write_predictions

    data = out / "data"
    if not (data / "street").is_dir():
        console.log(f"1/4 generating the built-in dataset in {data}")
        make_dataset(data)
    console.log("2/4 training (labeled: studio, unlabeled: street)")
    config = TrainConfig(
        source="studio", target="street", data_root=str(data), backbone="efficientnet_lite0", image_size=96,
        iterations=iterations, batch_size=16, device=device.value, out=str(out / "run"), log_every=10,
    )
    result = train(config, TrainProgress())
    console.log("3/4 exporting to ONNX and checking it against PyTorch on the street images")
    exported = run_export(ExportConfig(checkpoint=str(out / "run" / "last.pt"), output=str(out / "model.onnx")))
    console.log("4/4 predicting every street image through ONNX Runtime")
    paths = scan_folder(data / "street")
    with Predictor.load(exported.artifact, device="cpu") as predictor:
        predictions = predictor.predict_paths(paths)
    write_predictions(predictions, out / "predictions.csv")
    correct = sum(p.label == Path(p.path).parent.name for p in predictions)
    typer.echo(
        f"target accuracy after adaptation: Ct {100 * result.target_acc_ct:.1f}% (Cs {100 * result.target_acc_cs:.1f}%); "
        f"ONNX check {'passed' if exported.report else 'FAILED'}; ONNX Runtime predictions {correct}/{len(predictions)} correct "
        f"-> {out / 'predictions.csv'}"
    )
