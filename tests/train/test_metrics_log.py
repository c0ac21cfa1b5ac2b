"""``metrics.jsonl`` on resume: truncated to the resume point, a torn or malformed line dropped, never a crash."""

from __future__ import annotations

import json

from symnets_deploy.train.run_folder import MetricsLog


def test_resume_keeps_the_records_up_to_the_resume_point_and_drops_malformed_lines(tmp_path):
    path = tmp_path / "metrics.jsonl"
    step = {"iteration": 2, "loss": 0.5, "lr_head": float("nan")}
    evaluation = {"iteration": 4, "label_free": {"v_measure": 0.25}, "collapse": []}
    later = {"iteration": 6, "loss": 0.25}
    malformed = ['["label_free"]', "7", '{"iteration": "x"}', '{"loss": 1.0}', '{"iteration": 3, "label_free": 3}']
    lines = [json.dumps(step), *malformed, json.dumps(evaluation), json.dumps(later), '{"iteration": 7, "lo']
    path.write_text("\n".join(lines), encoding="utf-8")
    log = MetricsLog(path, resume_at=4)
    assert log.evaluations == [evaluation]
    assert path.read_text(encoding="utf-8") == json.dumps(step) + "\n" + json.dumps(evaluation) + "\n"
    log.write(later)
    assert [json.loads(line)["iteration"] for line in path.read_text(encoding="utf-8").splitlines()] == [2, 4, 6]


def test_a_new_run_starts_an_empty_log(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iteration": 1}\n', encoding="utf-8")
    assert MetricsLog(path, resume_at=0).evaluations == [] and path.read_text(encoding="utf-8") == ""
