"""The model card: JSON round trip, canonical JSON, validation as ArtifactError."""

from __future__ import annotations

import json

import pytest

from symnets_deploy import __version__
from symnets_deploy.card import ONNX_CARD_KEY, ModelCard
from symnets_deploy.errors import ArtifactError


def _fields(**changes):
    base = dict(
        class_names=("back_pack", "bike", "mug"), input_size=224, resize_size=256, mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), backbone="efficientnet_lite0", head="ct", method="symnets", source="amazon",
        target="webcam", dataset="office31", train_config={"lr": 0.01, "iterations": 1000, "nested": {"b": 1, "a": [1, 2]}},
        metrics={"target_acc_ct": 0.93}, created="2024-01-01T00:00:00+00:00",
    )
    base.update(changes)
    return base


def _card(**changes) -> ModelCard:
    return ModelCard(**_fields(**changes))


def test_round_trip_json():
    card = _card()
    again = ModelCard.from_json(card.to_json())
    assert again == card
    assert again.class_names == ("back_pack", "bike", "mug")
    assert isinstance(again.mean, tuple) and again.mean == (0.5, 0.5, 0.5)
    assert again.train_config["nested"] == {"b": 1, "a": [1, 2]}
    assert again.num_classes == 3
    assert ModelCard.from_dict(card.to_dict()) == card


def test_json_is_plain_and_canonical():
    card = _card()
    data = json.loads(card.to_json())
    assert data["class_names"] == ["back_pack", "bike", "mug"]
    assert data["mean"] == [0.5, 0.5, 0.5]
    assert list(data) == sorted(data)
    assert ONNX_CARD_KEY == "symnets.card"


def test_equal_cards_give_equal_json():
    a = _card(train_config={"lr": 0.01, "iterations": 1000})
    b = _card(train_config={"iterations": 1000, "lr": 0.01}, mean=[0.5, 0.5, 0.5], class_names=["back_pack", "bike", "mug"])
    assert a == b
    assert a.to_json() == b.to_json()
    assert _card(head="cs").to_json() != a.to_json()


def test_defaults():
    card = ModelCard(class_names=("a",), input_size=32, resize_size=37, mean=(0, 0, 0), std=(1, 1, 1), backbone="tiny")
    assert card.head == "ct" and card.method == "symnets" and card.interpolation == "bilinear"
    assert card.package_version == __version__
    assert card.created.endswith("+00:00")
    assert card.mean == (0.0, 0.0, 0.0) and all(isinstance(v, float) for v in card.mean)


def test_replace():
    card = _card()
    paired = card.replace(head="paired")
    assert paired.head == "paired" and card.head == "ct"
    assert paired.replace(head="ct") == card
    with pytest.raises(ArtifactError, match="head"):
        card.replace(head="ensemble")


@pytest.mark.parametrize(
    "changes,reason",
    [
        (dict(class_names=()), "class_names is empty"),
        (dict(class_names=("a", "b", "a")), "duplicates"),
        (dict(head="cst"), "unknown head"),
        (dict(std=(0.5, 0.0, 0.5)), "std must be positive"),
        (dict(std=(0.5, -1.0, 0.5)), "std must be positive"),
        (dict(std=(0.5, float("nan"), 0.5)), "std must be positive"),
        (dict(std=(0.5, float("inf"), 0.5)), "std must be positive"),
        (dict(std=(0.5, 0.5)), "3 values"),
        (dict(mean=(0.5,)), "3 values"),
        (dict(input_size=0), "input_size"),
        (dict(input_size=300, resize_size=256), "input_size"),
        # Issue 18 item 14: every value later code trusts is checked when the card is read.
        (dict(interpolation="lanczos9"), "unknown interpolation 'lanczos9' \\(valid: bilinear, bicubic\\)"),
        (dict(mean=(0.5, float("nan"), 0.5)), "mean must be finite"),
        (dict(mean=(0.5, float("inf"), 0.5)), "mean must be finite"),
        (dict(input_size=224.5), "whole numbers"),
        (dict(resize_size=True), "whole numbers"),
        (dict(input_size=224, resize_size=10**9), "input_size"),
        (dict(class_names="abc"), "class_names must be a list of non-empty strings"),
        (dict(class_names=("a", 2)), "class_names must be a list of non-empty strings"),
        (dict(class_names=("a", "")), "class_names must be a list of non-empty strings"),
        (dict(mean="0.5"), "mean needs 3 values"),
        (dict(std=("0.5", "0.5", "0.5")), "std needs 3 values"),
        (dict(backbone=7), "backbone must be a string"),
        (dict(head=["ct"]), "head must be a string"),
        (dict(interpolation=None), "interpolation must be a string"),
        (dict(metrics=[1, 2]), "metrics must be a JSON object"),
        (dict(train_config="lr=0.1"), "train_config must be a JSON object"),
    ],
)
def test_validation_errors(changes, reason):
    with pytest.raises(ArtifactError, match=reason) as info:
        _card(**changes)
    assert info.value.exit_code == 5
    # The same problem arriving as JSON is the same error.
    data = json.loads(_card().to_json())
    data.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    text = json.dumps(data)  # NaN/inf are written as the non-standard tokens json accepts back
    with pytest.raises(ArtifactError, match=reason):
        ModelCard.from_json(text)


def test_several_problems_are_reported_together():
    with pytest.raises(ArtifactError) as info:
        _card(class_names=(), head="x", std=(0, 0, 0))
    msg = str(info.value)
    assert "empty" in msg and "head" in msg and "std" in msg


def test_unknown_keys_are_ignored():
    data = json.loads(_card().to_json())
    data["added_in_version_9"] = {"anything": True}
    data["calibration"] = [1, 2, 3]
    assert ModelCard.from_dict(data) == _card()


@pytest.mark.parametrize("text", ["", "not json", "{'single': 'quotes'}", '{"class_names": ["a"', "<html></html>"])
def test_non_json_text(text):
    with pytest.raises(ArtifactError, match="not JSON"):
        ModelCard.from_json(text)


@pytest.mark.parametrize("text", ["[1, 2, 3]", '"a string"', "42", "null"])
def test_json_that_is_not_an_object(text):
    with pytest.raises(ArtifactError, match="JSON object"):
        ModelCard.from_json(text)


def test_missing_required_key():
    data = json.loads(_card().to_json())
    del data["class_names"]
    with pytest.raises(ArtifactError, match="class_names"):
        ModelCard.from_dict(data)


@pytest.mark.parametrize(
    "key,value",
    [("std", ["a", "b", "c"]), ("mean", "abc"), ("class_names", 5), ("input_size", "224"), ("std", None)],
)
def test_wrong_value_types_are_artifact_errors(key, value):
    data = json.loads(_card().to_json())
    data[key] = value
    with pytest.raises(ArtifactError, match="invalid model card"):
        ModelCard.from_json(json.dumps(data))
