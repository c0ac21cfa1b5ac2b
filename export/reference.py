"""The checkpoint as a ``Backend``: PyTorch, fp32, eval mode, so checks compare backends, not formats."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import nn

from symnets_deploy.backends.base import INPUT_NAME, Backend, TensorSpec
from symnets_deploy.card import ModelCard
from symnets_deploy.enums import Head
from symnets_deploy.train.model import SymNet, deployed_logits


class DeployWrapper(nn.Module):
    """G + the deployed head: images [N,3,H,W] 0..255 -> (logits [N,K], probs [N,K]).

    This is the function every artifact exports and the reference the checks run; the
    normalisation is inside the SymNet, so it ends up inside the graph.
    """

    def __init__(self, model: SymNet, head: Head | str) -> None:
        super().__init__()
        self.model = model
        self.head = Head(head).value
        self.num_classes = model.num_classes

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = deployed_logits(self.model(images), self.head, self.num_classes)
        return logits, torch.softmax(logits, dim=1)


class TorchReference(Backend):
    """Runs the trained model in fp32 on the CPU, eval mode, no autocast.

    Args:
        model: the SymNet from ``model_from_checkpoint``.
        head: the deployed classifier.
        card: the card to report from ``card()`` (optional).
        image_size: crop side S of the ``images`` input (default: the card's ``input_size``).
    """

    name = "torch"

    def __init__(self, model: SymNet, head: Head | str, *, card: Optional[ModelCard] = None, image_size: Optional[int] = None) -> None:
        super().__init__()
        self.wrapper = DeployWrapper(model, head)
        self._card = card
        self.image_size = image_size or (card.input_size if card is not None else None)

    def _activate_impl(self) -> None:
        self.wrapper.eval().float()

    def _card_impl(self) -> ModelCard:
        if self._card is None:
            raise NotImplementedError("TorchReference was built without a card")
        return self._card

    def _input_spec_impl(self) -> TensorSpec:
        size = self.image_size
        return TensorSpec(INPUT_NAME, (None, 3, size, size), "float32")

    def _infer_impl(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            logits, probs = self.wrapper(torch.from_numpy(images))
        # The ct/cs logits are a column slice of the head output: hand out contiguous arrays.
        return {"logits": np.ascontiguousarray(logits.numpy()), "probs": np.ascontiguousarray(probs.numpy())}
