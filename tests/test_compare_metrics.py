"""scripts/compare_metrics.py: timings and run state are set aside, metrics are not."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compare_metrics.py"


def _write(folder: Path, map_value: float, seconds: float, from_disk: bool) -> Path:
    (folder / "workbench").mkdir(parents=True)
    (folder / "workbench" / "m.json").write_text(json.dumps(
        {"groups": {"job_norm": {"map": map_value}}, "seconds": seconds,
         "frozen_cache": {"from_disk": from_disk}}))
    (folder / "train_log.csv").write_text(f"step,loss,seconds\n1,{map_value},{seconds}\n")
    return folder


def _run(capsys, monkeypatch, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])
    with pytest.raises(SystemExit) as exc:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    return exc.value.code, capsys.readouterr().out


def test_timings_and_run_state_are_not_differences(tmp_path, capsys, monkeypatch):
    old = _write(tmp_path / "old", 0.4, 10.0, False)
    new = _write(tmp_path / "new", 0.4, 99.0, True)
    code, out = _run(capsys, monkeypatch, str(old), str(new))
    assert code == 0
    assert "largest numeric difference 0, 0 above 0" in out


def test_a_metric_difference_fails_unless_within_tol(tmp_path, capsys, monkeypatch):
    old = _write(tmp_path / "old", 0.4, 10.0, False)
    new = _write(tmp_path / "new", 0.4 + 1e-6, 10.0, False)
    code, out = _run(capsys, monkeypatch, str(old), str(new))
    assert code == 1 and "/groups/job_norm/map" in out and "[0]/loss" in out
    code, out = _run(capsys, monkeypatch, str(old), str(new), "--tol", "1e-5")
    assert code == 0 and "0 above 1e-05" in out


def test_a_missing_file_fails(tmp_path, capsys, monkeypatch):
    old = _write(tmp_path / "old", 0.4, 10.0, False)
    new = tmp_path / "new"
    new.mkdir()
    code, out = _run(capsys, monkeypatch, str(old), str(new))
    assert code == 1 and "missing in" in out


def test_a_text_difference_fails(tmp_path, capsys, monkeypatch):
    old, new = tmp_path / "old", tmp_path / "new"
    for folder, verdict in ((old, "holds"), (new, "does not hold")):
        folder.mkdir()
        (folder / "claims.json").write_text(json.dumps({"claims": [{"verdict": verdict}]}))
    code, out = _run(capsys, monkeypatch, str(old), str(new))
    assert code == 1 and "1 text differences" in out


def test_a_listed_file_missing_on_the_old_side_is_named(tmp_path, capsys, monkeypatch):
    old = _write(tmp_path / "old", 0.4, 10.0, False)
    new = _write(tmp_path / "new", 0.4, 10.0, False)
    listing = tmp_path / "only.txt"
    listing.write_text("metrics/workbench/m.json\nmetrics/nope.json\n")
    code, out = _run(capsys, monkeypatch, str(old), str(new), "--only", str(listing))
    assert code == 1 and f"nope.json: missing in {old} and {new}" in out
