"""The SymNet (paper section 3.1): backbone G, then one Linear(feat, 2K) holding Cs, Ct and Cst.

The first K outputs are Cs, the last K are Ct, and the softmax over all 2K is Cst. The
network takes float RGB values in 0..255 and normalises inside, so the exported graph and
the trained module compute exactly the same function.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from symnets_deploy.enums import Head


class Normalize(nn.Module):
    """(x / 255 - mean) / std with per-channel buffers; x is [N,3,H,W] RGB in 0..255."""

    def __init__(self, mean: tuple[float, float, float], std: tuple[float, float, float]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        # Folded into one multiply-add: x * scale + shift.
        self.register_buffer("scale", 1.0 / (255.0 * std_t))
        self.register_buffer("shift", -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


class SymNet(nn.Module):
    """G plus a linear head of 2K outputs (SymNets) or K outputs (source-only baseline).

    Args:
        backbone: G, mapping normalised [N,3,S,S] to [N, feat_dim].
        feat_dim: G's output width.
        num_classes: K.
        mean, std: input normalisation of the backbone (0..1 units).
        symmetric: True for SymNets (2K outputs), False for the source-only baseline (K).
    """

    def __init__(self, backbone: nn.Module, feat_dim: int, num_classes: int, mean, std, *, symmetric: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.symmetric = symmetric
        self.normalize = Normalize(mean, std)
        self.backbone = backbone
        self.head = nn.Linear(feat_dim, 2 * num_classes if symmetric else num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """G(x) for images in 0..255: [N, feat_dim]."""
        return self.backbone(self.normalize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """All head outputs: [N, 2K] (SymNets) or [N, K] (source-only)."""
        return self.head(self.features(images))

    def classify_frozen(self, features: torch.Tensor) -> torch.Tensor:
        """Head outputs through detached weights: gradients reach G only (the feature loss)."""
        return F.linear(features, self.head.weight.detach(), self.head.bias.detach())

    def head_parameters(self) -> list[nn.Parameter]:
        return list(self.head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        return list(self.backbone.parameters())


def deployed_logits(logits: torch.Tensor, head: Head | str, num_classes: int) -> torch.Tensor:
    """The K logits of the deployed classifier from all head outputs.

    ``ct``: last K outputs; ``cs``: first K; ``paired``: log q_k with q_k = p_k + p_{k+K}
    of the 2K-way softmax (eq. 10), whose softmax is q itself. A source-only model has one
    classifier, returned as is for every head.
    """
    if logits.shape[1] == num_classes:
        return logits
    head = Head(head)
    if head is Head.cs:
        return logits[:, :num_classes]
    if head is Head.ct:
        return logits[:, num_classes:]
    pairs = torch.stack((logits[:, :num_classes], logits[:, num_classes:]))
    return torch.logsumexp(pairs, dim=0) - torch.logsumexp(logits, dim=1, keepdim=True)
