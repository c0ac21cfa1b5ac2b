"""Choosing without target labels: the ranking rule, and select() over real run folders."""

from __future__ import annotations

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
