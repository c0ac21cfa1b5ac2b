"""Choosing without target labels: the ranking rule, and select() over real run folders."""

from __future__ import annotations

import json

import pytest

from symnets_deploy import selection as S


def _c(acc, vm):
    return {"source_val_acc_ct": acc, "v_measure": vm}


def test_selection_scores_and_order():
    cands = [_c(0.8, 0.5), _c(0.9, 0.4), _c(0.8, 0.6), _c(None, float("nan"))]
    # acc ranks 2.5, 1, 2.5, 4; v_measure ranks 2, 3, 1, 4.
    assert S.selection_scores(cands) == [2.25, 2.0, 1.75, 4.0]
    assert S.selection_order(cands) == [2, 1, 0, 3]
    assert S.selection_order(cands, collapsed=[False, False, True, False]) == [1, 0, 3, 2]
    tied = [_c(0.8, 0.5), _c(0.9, 0.4), _c(0.9, 0.4)]  # equal scores: higher accuracy, then lower index
    assert S.selection_scores(tied[:2]) == [1.5, 1.5] and S.selection_order(tied) == [1, 2, 0]
    no_val = [_c(None, 0.3), _c(None, 0.7), _c(None, None)]
    assert S.selection_scores(no_val) == [2.0, 1.0, 3.0] and S.selection_order(no_val) == [1, 0, 2]
    assert S.selection_order([]) == [] and isinstance(S.SELECTION_RULE, str)
    with pytest.raises(ValueError, match="collapsed"):
        S.selection_order(cands, collapsed=[True])


def test_select_skips_metrics_lines_of_the_wrong_shape(tmp_path):
    """Valid JSON that is no metrics record (a string iteration, no iteration, a list, a number, scores that
    are not an object) is skipped like a torn line, not a crash; the good evaluation is still the candidate."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "symnets", "iterations": 6, "source": "a", "target": "b"}))
    (run / "checkpoints" / "iter_000006.pt").write_bytes(b"")  # choosing reads JSON only: the weights are never opened
    good = {"iteration": 6, "label_free": {"source_val_acc_ct": 0.5, "v_measure": 0.4}, "collapse": [], "acc_ct": 0.7}
    lines = ['{"iteration": "x", "label_free": {}}', '{"label_free": {}}', '["label_free"]', "7", '"label_free"',
             json.dumps(good), '{"iteration": 6, "label_free": 3}', '{"iteration": 6, "label_f']
    (run / "metrics.jsonl").write_text("\n".join(lines), encoding="utf-8")
    selection = S.select([run])
    assert [(c.iteration, c.scores, c.oracle_target_acc) for c in selection.candidates] == [(6, good["label_free"], 0.7)]
    assert selection.chosen.rank == 1
