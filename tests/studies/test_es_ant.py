"""``neuromod-rl reproduce es-ant`` runs end to end at the smoke scale: both methods, 3 seeds, the
claims table with numbers, medians and IQRs, and both plots."""

from __future__ import annotations

import json
import re

import pytest
import torch
from support import run_study_twice

from neuromod_rl.studies import command as reproduce

torch.set_num_threads(1)


@pytest.mark.slow
def test_smoke_es_ant_writes_report_table_and_plots(tmp_path, capsys):
    assert reproduce.main(["es-ant", "--scale", "smoke", "--seed", "2", "--out", str(tmp_path)]) == 0
    report = (tmp_path / "es-ant.md").read_text()
    assert "neuromod-rl reproduce es-ant --scale smoke --seed 2" in report
    claims = re.findall(r"^\| (.+?) \| (yes|\*\*no\*\*) \| (.+?) \|$", report, flags=re.M)
    assert len(claims) == 3 and all(re.search(r"\d", evidence) for _, _, evidence in claims)
    rows = re.findall(r"^\| (ABCD rule \(plastic\)|static weights) \| 3 \| (\d+) \|", report, flags=re.M)
    assert {name for name, _ in rows} == {"ABCD rule (plastic)", "static weights"}
    assert int(dict(rows)["ABCD rule (plastic)"]) == 5 * int(dict(rows)["static weights"])  # A, B, C, D, eta
    assert re.search(r"-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\]", report)  # median [IQR]
    for png in ("es_ant_learning.png", "es_ant_returns.png"):
        assert (tmp_path / png).read_bytes()[:4] == b"\x89PNG" and f"]({png})" in report
    assert "wrote" in capsys.readouterr().out


@pytest.mark.slow
def test_es_ant_resumes_and_reruns_only_a_changed_method(tmp_path, monkeypatch):
    from neuromod_rl.studies.adaptation import es_ant

    args = ["es-ant", "--scale", "smoke", "--seeds", "1", "--out", str(tmp_path)]
    store = tmp_path / "es-ant.smoke.runs.json"
    first = run_study_twice(args, store)
    assert sorted(first) == ["ABCD rule (plastic)/seed0", "static weights/seed0"]

    static = es_ant.METHODS["static weights"]
    monkeypatch.setitem(es_ant.METHODS, "static weights", {**static, "rule_kwargs": {**static["rule_kwargs"],
                                                                                     "bias": True}})
    assert reproduce.main(args) == 0
    again = json.loads(store.read_text())["runs"]
    assert again["ABCD rule (plastic)/seed0"] == first["ABCD rule (plastic)/seed0"]
    assert again["static weights/seed0"]["fingerprint"] != first["static weights/seed0"]["fingerprint"]
