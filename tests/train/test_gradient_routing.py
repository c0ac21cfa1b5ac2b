"""Gradient routing of eq. 11: the classifier loss updates the head only, the feature loss G only.

References are computed on the plain, undetached network: the head gradient of the classifier
loss does not depend on whether the features were detached, and G's gradient of the feature
loss does not depend on whether the head weights were; so a correct combined step must match
them exactly, and any leak of one loss into the other's parameters shows up as a difference.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from symnets_deploy.train.backbones import get_backbone  # noqa: E402
from symnets_deploy.train.checkpoint import build_model  # noqa: E402
from symnets_deploy.train.config import TrainConfig  # noqa: E402
from symnets_deploy.enums import Ablation
from symnets_deploy.train.losses import classifier_loss, feature_loss  # noqa: E402
from symnets_deploy.train.model import SymNet  # noqa: E402
from symnets_deploy.train.step import make_optimizer, training_step  # noqa: E402

K = 3
LAM = 0.7




def _config(**kw) -> TrainConfig:
    return TrainConfig(source="s", target="t", data_root="unused", backbone="tiny", image_size=32, device="cpu", **kw)


def _setup(method: str = "symnets", seed: int = 0):
    torch.manual_seed(seed)
    config = _config(method=method)
    model = build_model(config, K)
    model.train()
    g = torch.Generator().manual_seed(seed + 1)
    x_s = torch.rand(4, 3, 32, 32, generator=g) * 255
    x_t = torch.rand(4, 3, 32, 32, generator=g) * 255
    y_s = torch.tensor([0, 1, 2, 1])
    return model, config, x_s, y_s, x_t


def _grads(params):
    return [None if p.grad is None else p.grad.detach().clone() for p in params]


def _is_zero(grad) -> bool:
    return grad is None or not bool(grad.any())


def test_model_layout():
    model, *_ = _setup()
    assert isinstance(model, SymNet)
    assert model.head.out_features == 2 * K
    assert model.head.in_features == get_backbone("tiny").feat_dim
    head_ids = {id(p) for p in model.head_parameters()}
    assert head_ids.isdisjoint(id(p) for p in model.backbone_parameters())
    assert len(head_ids) + len(model.backbone_parameters()) == len(list(model.parameters()))


def test_classifier_loss_reaches_the_head_only():
    model, config, x_s, y_s, x_t = _setup()
    f_s, f_t = model.features(x_s), model.features(x_t)
    cls = classifier_loss(model.head(f_s.detach()), model.head(f_t.detach()), y_s)
    cls["total"].backward()
    assert all(_is_zero(p.grad) for p in model.backbone_parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head_parameters())


def test_feature_loss_reaches_g_only_and_a_step_leaves_the_head_unchanged():
    model, config, x_s, y_s, x_t = _setup()
    optimizer = make_optimizer(model, config)
    head_before = [p.detach().clone() for p in model.head_parameters()]
    g_before = [p.detach().clone() for p in model.backbone_parameters()]
    f_s, f_t = model.features(x_s), model.features(x_t)
    feat = feature_loss(model.classify_frozen(f_s), model.classify_frozen(f_t), y_s, LAM)
    feat["total"].backward()
    assert all(_is_zero(p.grad) for p in model.head_parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.backbone_parameters() if p.grad is not None) > 0
    optimizer.step()
    # Weight decay and momentum must not move the head either.
    assert all(torch.equal(a, b) for a, b in zip(head_before, model.head_parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(g_before, model.backbone_parameters()))


def test_classify_frozen_computes_the_head():
    model, _, x_s, *_ = _setup()
    f = model.features(x_s)
    torch.testing.assert_close(model.classify_frozen(f), model.head(f), rtol=0, atol=0)


@pytest.mark.parametrize("ablation", [a.value for a in Ablation])
def test_combined_step_equals_each_loss_alone(ablation):
    model, config, x_s, y_s, x_t = _setup()
    config = _config(ablation=ablation)
    head, backbone = model.head_parameters(), model.backbone_parameters()

    model.zero_grad(set_to_none=True)
    terms = training_step(model, x_s, y_s, x_t, LAM, config)
    step_head, step_g = _grads(head), _grads(backbone)
    assert {"cls_total", "feat_total"} <= set(terms)

    # Classifier loss alone, on the undetached network: its head gradient.
    model.zero_grad(set_to_none=True)
    classifier_loss(model(x_s), model(x_t), y_s, ablation)["total"].backward()
    ref_head = _grads(head)

    # Feature loss alone, on the undetached network: its G gradient.
    model.zero_grad(set_to_none=True)
    feature_loss(model(x_s), model(x_t), y_s, LAM, ablation)["total"].backward()
    ref_g = _grads(backbone)

    for got, ref in zip(step_head, ref_head):
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
    n_nonzero = 0
    for got, ref in zip(step_g, ref_g):
        if ref is None:
            assert _is_zero(got)
            continue
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-7)
        n_nonzero += bool(ref.any())
    assert n_nonzero > 0
    # The logged terms are the losses themselves (detached).
    with torch.no_grad():
        ref_total = float(classifier_loss(model(x_s), model(x_t), y_s, ablation)["total"])
    assert float(terms["cls_total"]) == pytest.approx(ref_total, rel=1e-5)


def test_source_only_trains_g_and_head():
    model, config, x_s, y_s, _ = _setup(method="source-only")
    assert model.head.out_features == K
    optimizer = make_optimizer(model, config)
    before = [p.detach().clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    terms = training_step(model, x_s, y_s, None, LAM, config)
    ref = torch.nn.functional.cross_entropy(model(x_s), y_s)
    assert float(terms["total"]) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.head_parameters())
    assert sum(float(p.grad.abs().sum()) for p in model.backbone_parameters() if p.grad is not None) > 0
    optimizer.step()
    changed = [not torch.equal(a, b) for a, b in zip(before, model.parameters())]
    head_n = len(model.head_parameters())
    # parameters() lists the backbone (normalize has buffers only) before the head.
    assert all(changed[-head_n:])
    assert any(changed[:-head_n])
