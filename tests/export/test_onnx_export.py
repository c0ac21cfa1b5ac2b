"""ONNX export (DESIGN.md section 2): one self-contained file, dynamic batch, card in metadata, torch parity."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from symnets_deploy.backends.ort import OrtBackend  # noqa: E402
from symnets_deploy.card import ONNX_CARD_KEY, ModelCard  # noqa: E402
from symnets_deploy.errors import UsageError  # noqa: E402
from symnets_deploy.export.api import ExportConfig, run_export  # noqa: E402
from symnets_deploy.export.calibration import collect_images  # noqa: E402
from symnets_deploy.card import ONNX_PRECISION_KEY  # noqa: E402
from symnets_deploy.export.onnx import export_onnx  # noqa: E402
from symnets_deploy.export.reference import TorchReference  # noqa: E402
from symnets_deploy.train.backbones import create_backbone, get_backbone, list_backbones  # noqa: E402
from symnets_deploy.train.checkpoint import model_from_checkpoint  # noqa: E402
from symnets_deploy.train.model import SymNet  # noqa: E402


@pytest.fixture(scope="module")
def tiny_export(tiny_run, tmp_path_factory):
    """The tiny run exported to a folder of its own (calibration: the card's target domain)."""
    out = tmp_path_factory.mktemp("tiny_onnx") / "model.onnx"
    return run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), output=str(out)))


def test_export_writes_one_self_contained_checked_file(tiny_export):
    folder = tiny_export.artifact.parent
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx", "model.onnx.verify.json"]
    model = onnx.load(str(tiny_export.artifact))
    onnx.checker.check_model(model, full_check=True)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")][0] >= 17


def test_graph_io_contract(tiny_export):
    model = onnx.load(str(tiny_export.artifact))
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    assert inp.name == "images" and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert dims[0].dim_param and not dims[0].HasField("dim_value")  # dynamic batch
    assert [d.dim_value for d in dims[1:]] == [3, 32, 32]
    assert [o.name for o in model.graph.output] == ["logits", "probs"]
    assert all(o.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for o in model.graph.output)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta[ONNX_PRECISION_KEY] == "fp32"
    json.loads(meta[ONNX_CARD_KEY])


def test_card_read_back_equals_the_checkpoint_card(tiny_run, tiny_export):
    _, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    with OrtBackend(tiny_export.artifact) as backend:
        assert backend.card() == card


def test_head_option_changes_only_the_card_head_and_the_function(tiny_run, tmp_path):
    model, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    result = run_export(ExportConfig(checkpoint=str(tiny_run / "last.pt"), head="cs", output=str(tmp_path / "cs.onnx")))
    images = collect_images(card).images
    with OrtBackend(result.artifact) as backend:
        assert backend.card() == card.replace(head="cs")
        got = backend.infer(images)
    want = TorchReference(model, "cs").infer(images)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-4, rtol=0)
    assert not np.allclose(got["logits"], TorchReference(model, "ct").infer(images)["logits"], atol=1e-3)


def test_batch_sizes_1_7_32_give_the_same_per_image_outputs(tiny_run, tiny_export):
    _, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    base = collect_images(card).images
    images = np.concatenate([base, base[:, :, :, ::-1], base[:, :, ::-1, :]])[:32]  # 32 distinct real crops
    assert len(images) == 32
    with OrtBackend(tiny_export.artifact) as backend:
        full = backend.infer(np.ascontiguousarray(images))
        for size in (1, 7):
            parts = [backend.infer(np.ascontiguousarray(images[i : i + size])) for i in range(0, 32, size)]
            for name in ("logits", "probs"):
                np.testing.assert_allclose(np.concatenate([p[name] for p in parts]), full[name], atol=1e-5, rtol=0)


def test_ort_reproduces_torch_on_real_office_images(tiny_run, office_root, tmp_path):
    result = run_export(ExportConfig(
        checkpoint=str(tiny_run / "last.pt"), output=str(tmp_path / "model.onnx"),
        calibration_images=str(office_root / "webcam"), max_images=24,
    ))
    report = json.loads(result.report_path.read_text())
    assert report["passed"] and report["images"]["count"] == 24
    assert report["images"]["source"] == str(office_root / "webcam")
    (cmp,) = report["comparisons"]
    assert cmp["reference"] == "torch" and cmp["candidate"] == "onnxruntime"
    assert cmp["outputs"]["logits"]["max_abs"] <= 1e-4 and cmp["top1_agree"] == 1.0


def test_lite0_checkpoint_exports_and_matches_torch_on_real_images(lite0_run, office_root, tmp_path):
    result = run_export(ExportConfig(
        checkpoint=str(lite0_run / "last.pt"), output=str(tmp_path / "model.onnx"),
        calibration_images=str(office_root / "amazon"), max_images=8,
    ))
    assert result.report.passed
    (cmp,) = result.report.comparisons
    assert cmp.outputs["logits"].max_abs <= 1e-4 and cmp.top1_agree == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.verify.json"]  # no temp file left


@pytest.mark.parametrize("name", [n for n in list_backbones() if n != "resnet50"] + [pytest.param("resnet50", marks=pytest.mark.slow)])
def test_every_registered_backbone_exports(name, tmp_path):
    """Random-init weights are enough to prove the graph exports and runs the same in ONNX Runtime."""
    spec = get_backbone(name)
    size = 32 if name == "tiny" else spec.input_size
    torch.manual_seed(0)
    model = SymNet(create_backbone(name, None, size), spec.feat_dim, 4, spec.mean, spec.std).eval()
    card = ModelCard(class_names=tuple("abcd"), input_size=size, resize_size=size, mean=spec.mean, std=spec.std, backbone=name)
    path = export_onnx(model, card, tmp_path / "m.onnx")
    images = (np.random.default_rng(0).random((2, 3, size, size)) * 255).astype(np.float32)
    with OrtBackend(path) as backend:
        got = backend.infer(images)
    want = TorchReference(model, "ct").infer(images)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=1e-4, rtol=0)


def test_opset_below_18_is_refused(tiny_run, tmp_path):
    model, card, _ = model_from_checkpoint(tiny_run / "last.pt")
    with pytest.raises(UsageError, match="opset 17"):
        export_onnx(model, card, tmp_path / "m.onnx", opset=17)
    assert not list(tmp_path.iterdir())


def test_unreachable_target_domain_asks_for_calibration_images(tiny_run, tmp_path):
    from symnets_deploy.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(tiny_run / "last.pt")
    ckpt["card"]["train_config"]["data_root"] = str(tmp_path / "moved-away")
    save_checkpoint(tmp_path / "run" / "last.pt", {k: v for k, v in ckpt.items() if k != "format"})
    with pytest.raises(UsageError, match="--calibration-images"):
        run_export(ExportConfig(checkpoint=str(tmp_path / "run" / "last.pt")))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["last.pt"]
