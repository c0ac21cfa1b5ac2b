"""Predictor: equal to PyTorch, robust to bad files, every image mode, batching and padding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("onnxruntime")

from symnets_deploy import Prediction, Predictor  # noqa: E402
from symnets_deploy.backends import BatchLimits, OrtBackend  # noqa: E402
from symnets_deploy.card import ONNX_CARD_KEY  # noqa: E402
from symnets_deploy.errors import ArtifactError, UsageError  # noqa: E402
from symnets_deploy.inputs import collect_paths  # noqa: E402
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch  # noqa: E402

from .conftest import BAD, GOOD, exif_orientation, pattern  # noqa: E402


def full_probs(prediction: Prediction, class_names) -> np.ndarray:
    """The K-vector of probabilities of a prediction made with top_k = K."""
    assert len(prediction.topk_labels) == len(class_names)
    probs = dict(zip(prediction.topk_labels, prediction.topk_probs))
    return np.array([probs[name] for name in class_names])


@pytest.fixture(params=["tiny", "lite0"])
def exported(request) -> tuple[Path, Path]:
    """(training run, its exported ONNX) for each backbone."""
    return request.getfixturevalue(f"{request.param}_run"), request.getfixturevalue(f"{request.param}_onnx")


def test_predictions_equal_pytorch(exported, shapes_root: Path) -> None:
    torch = pytest.importorskip("torch")
    from symnets_deploy.export.reference import DeployWrapper
    from symnets_deploy.train.checkpoint import model_from_checkpoint

    run, onnx_path = exported
    paths = collect_paths([shapes_root])[::3]  # both domains, every class
    model, card, _ = model_from_checkpoint(run / "last.pt")
    crops = [preprocess_image(p, PreprocessConfig.from_card(card)) for p in paths]
    with torch.inference_mode():
        _, expected = DeployWrapper(model, card.head).eval()(torch.from_numpy(to_batch(crops)))
    expected = expected.numpy()

    with Predictor.load(onnx_path, device="cpu", batch_size=5, top_k=card.num_classes) as predictor:
        assert predictor.class_names == card.class_names
        results = predictor.predict_paths(paths)
    assert [r.path for r in results] == [str(p) for p in paths] and all(r.ok for r in results)
    got = np.stack([full_probs(r, card.class_names) for r in results])
    assert [r.index for r in results] == expected.argmax(1).tolist()
    assert [r.label for r in results] == [card.class_names[i] for i in expected.argmax(1)]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)


def test_mixed_folder_gives_one_row_per_file_with_the_right_status(tiny_onnx: Path, mixed_folder: Path) -> None:
    paths = collect_paths([mixed_folder])
    with Predictor.load(tiny_onnx, batch_size=4, top_k=2) as predictor:
        results = predictor.predict_paths(paths)
        classes = predictor.class_names
    names = [Path(r.path).relative_to(mixed_folder).as_posix() for r in results]
    assert sorted(names) == sorted([*GOOD, *BAD])
    by_name = dict(zip(names, results))
    for name in GOOD:
        r = by_name[name]
        assert r.ok and r.error == "" and r.label == classes[r.index], name
        assert r.topk_labels[0] == r.label and r.topk_probs[0] == r.confidence and len(r.topk_probs) == 2
        assert list(r.topk_probs) == sorted(r.topk_probs, reverse=True) and sum(r.topk_probs) <= 1 + 1e-6
    for name, reason in BAD.items():
        r = by_name[name]
        assert r.status == "error" and reason in r.error and "\n" not in r.error, (name, r.error)
        assert (r.label, r.index, r.confidence, r.topk_labels) == (None, None, None, ())


def test_every_mode_is_predicted_like_its_rgb_equivalent(lite0_onnx: Path, tmp_path: Path) -> None:
    rgb = pattern(120, 90, seed=3)
    alpha = np.where(np.arange(120)[None, :] < 70, 255, 0).repeat(90, 0).astype(np.uint8)
    palette = Image.fromarray(rgb).quantize(64)
    files = {
        "gray.png": (Image.fromarray(rgb).convert("L"), None),
        "palette.png": (palette, None),
        "rgba.png": (Image.fromarray(np.dstack([rgb, alpha]), "RGBA"), None),
        "cmyk.tif": (Image.fromarray(rgb).convert("CMYK"), None),
        "gray16.png": (Image.fromarray(rgb[..., 1].astype(np.uint16) * 257), None),
        "exif6.png": (Image.fromarray(np.ascontiguousarray(np.rot90(rgb))), exif_orientation(6)),
    }
    expected = {
        "gray.png": np.asarray(Image.fromarray(rgb).convert("L").convert("RGB")),
        "palette.png": np.asarray(palette.convert("RGB")),
        "rgba.png": np.where(alpha[..., None] == 255, rgb, 255).astype(np.uint8),
        "cmyk.tif": rgb,
        "gray16.png": np.repeat(rgb[..., 1:2], 3, axis=2),
        "exif6.png": rgb,
    }
    for name, (img, exif) in files.items():
        img.save(tmp_path / name, **({"exif": exif} if exif is not None else {}))
    with Predictor.load(lite0_onnx, top_k=3) as predictor:
        from_files = predictor.predict_paths([tmp_path / n for n in files])
        from_rgb = predictor.predict_images([expected[n] for n in files])
        unrotated = predictor.predict_images([np.ascontiguousarray(np.rot90(rgb))])[0]
    for name, a, b in zip(files, from_files, from_rgb):
        assert a.ok and b.ok and b.path is None, (name, a.error)
        assert a.label == b.label, name
        np.testing.assert_allclose(full_probs(a, predictor.class_names), full_probs(b, predictor.class_names), atol=1e-5, err_msg=name)
    # The comparison has power: ignoring the EXIF rotation would change the probabilities.
    assert np.abs(full_probs(unrotated, predictor.class_names) - full_probs(from_files[-1], predictor.class_names)).max() > 1e-3


def test_predict_images_takes_pil_and_arrays_and_reports_bad_ones(tiny_onnx: Path) -> None:
    rgb = pattern()
    with Predictor.load(tiny_onnx, top_k=3) as predictor:
        pil, arr, gray, bad_dtype, bad_shape = predictor.predict_images(
            [Image.fromarray(rgb), rgb, rgb[..., 0], rgb.astype(np.float32), rgb[..., :2]]
        )
    assert pil.ok and arr.ok and gray.ok and pil.path is None
    assert pil.topk_probs == arr.topk_probs and pil.topk_labels == arr.topk_labels
    assert bad_dtype.status == "error" and "uint8" in bad_dtype.error
    assert bad_shape.status == "error" and "shape" in bad_shape.error


def test_batch_size_and_padding_do_not_change_results(tiny_onnx: Path, shapes_root: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    paths = collect_paths([shapes_root])[:7]
    results = {}
    for batch_size in (1, 3, 16):
        with Predictor.load(tiny_onnx, batch_size=batch_size, top_k=3) as predictor:
            results[batch_size] = [full_probs(r, predictor.class_names) for r in predictor.predict_paths(paths)]
    # A graph with a static batch of 4: batches are fixed at 4 and the last one is padded.
    model = onnx.load(str(tiny_onnx))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 4
    static = tmp_path / "static4.onnx"
    onnx.save(model, str(static))
    with Predictor.load(static, batch_size=16, top_k=3) as predictor:
        assert (predictor.limits, predictor.batch_size) == (BatchLimits(4, 4, fixed=True), 4)
        results["static4"] = [full_probs(r, predictor.class_names) for r in predictor.predict_paths(paths)]
    for key in (3, 16, "static4"):
        np.testing.assert_allclose(np.stack(results[key]), np.stack(results[1]), atol=1e-6, err_msg=str(key))


def test_prefetch_is_bounded_and_results_stream(tiny_onnx: Path, shapes_root: Path) -> None:
    paths = collect_paths([shapes_root])
    pulled = []

    def source():
        for p in paths:
            pulled.append(p)
            yield p

    with Predictor.load(tiny_onnx, batch_size=2, workers=1) as predictor:
        stream = predictor.iter_predict_paths(source())
        first = next(stream)
        assert first.path == str(paths[0])
        # Decoded ahead: prefetch + 1 batches waiting, plus one per runner and one queued.
        bound = 2 * (predictor.prefetch + 1) + 2 * (predictor.backend.max_concurrency() + 1)
        assert len(pulled) <= bound < len(paths)
        stream.close()


def _with_card(src: Path, dst: Path, **changes) -> Path:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(src))
    for prop in model.metadata_props:
        if prop.key == ONNX_CARD_KEY:
            prop.value = json.dumps({**json.loads(prop.value), **changes})
    onnx.save(model, str(dst))
    return dst


def test_card_that_contradicts_the_graph_is_an_artifact_error(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="card says 48x48"):
        Predictor.load(_with_card(tiny_onnx, tmp_path / "size.onnx", input_size=48, resize_size=55))
    # Issue 9, case 11: a class-count mismatch used to surface at the first batch, without the file's path.
    four = _with_card(tiny_onnx, tmp_path / "classes.onnx", class_names=["a", "b", "c", "d"])
    with OrtBackend(four) as backend:
        assert backend.output_classes() == 3
    with pytest.raises(ArtifactError, match=f"{four}: the model outputs 3 classes but its card lists 4"):
        Predictor.load(four)


def test_load_validates_its_arguments(tiny_onnx: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not found"):
        Predictor.load(tmp_path / "missing.onnx")
    with pytest.raises(UsageError, match="batch_size"):
        Predictor(OrtBackend(tiny_onnx), batch_size=0)
    with Predictor.load(tiny_onnx, top_k=50) as predictor:
        assert predictor.top_k == predictor.card.num_classes
        assert predictor.predict_paths([]) == []
    assert not predictor.backend.is_active

