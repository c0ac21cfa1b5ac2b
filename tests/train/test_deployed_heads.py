"""Which logits Cs, Ct and the paired head deploy, pinned by hand (issue 9: independent of the code).

The head's weights are zero and its bias is chosen, so the 2K outputs are known whatever the
backbone computes; the expected values are written out here, not derived from the code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.export.reference import DeployWrapper  # noqa: E402
from symnets_deploy.train.backbones import create_backbone, get_backbone  # noqa: E402
from symnets_deploy.train.model import SymNet  # noqa: E402

BIAS = [1.0, 2.0, 0.5, 3.0, 0.0, 1.5]  # K = 3: Cs = [1, 2, 0.5], Ct = [3, 0, 1.5]


def _symnet(bias: list[float], symmetric: bool = True) -> SymNet:
    spec = get_backbone("tiny")
    model = SymNet(create_backbone("tiny", None, 32), spec.feat_dim, 3, spec.mean, spec.std, symmetric=symmetric).eval()
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor(bias))
    return model


@pytest.mark.parametrize("head, expected", [
    ("cs", [1.0, 2.0, 0.5]),
    ("ct", [3.0, 0.0, 1.5]),
    # paired: log q_k with q_k = p_k + p_{k+K} of the 6-way softmax (eq. 10)
    ("paired", [math.log((math.e ** 1 + math.e ** 3) / sum(math.e ** b for b in BIAS)),
                math.log((math.e ** 2 + math.e ** 0) / sum(math.e ** b for b in BIAS)),
                math.log((math.e ** 0.5 + math.e ** 1.5) / sum(math.e ** b for b in BIAS))]),
])
def test_each_head_deploys_its_own_logits(head, expected):
    images = torch.rand(2, 3, 32, 32) * 255
    with torch.no_grad():
        logits, probs = DeployWrapper(_symnet(BIAS), head)(images)
    np.testing.assert_allclose(logits.numpy(), [expected, expected], rtol=1e-6, atol=1e-6)
    e = np.exp(np.array(expected) - max(expected))
    np.testing.assert_allclose(probs.numpy()[0], e / e.sum(), rtol=1e-6, atol=1e-7)
    assert int(logits.argmax(1)[0]) == {"cs": 1, "ct": 0, "paired": 0}[head]


def test_paired_probabilities_sum_the_two_halves():
    with torch.no_grad():
        _, probs = DeployWrapper(_symnet(BIAS), "paired")(torch.zeros(1, 3, 32, 32))
    p = np.exp(BIAS) / np.exp(BIAS).sum()
    np.testing.assert_allclose(probs.numpy()[0], p[:3] + p[3:], rtol=1e-6)


def test_a_source_only_model_has_one_classifier_for_every_head():
    for head in ("cs", "ct", "paired"):
        with torch.no_grad():
            logits, _ = DeployWrapper(_symnet([0.2, 0.1, 0.7], symmetric=False), head)(torch.zeros(1, 3, 32, 32))
        np.testing.assert_allclose(logits.numpy()[0], [0.2, 0.1, 0.7], rtol=1e-6)
