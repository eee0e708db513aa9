"""uwe.pipeline.notebooks: executed notebooks cleaned of what says where and when they ran."""

from __future__ import annotations

import json

import pytest

from uwe.pipeline import notebooks


def _notebook(root, home):
    bar = [f"\rtrain:  {k}%|#| {k}/100 [00:0{k % 10}<00:00]" for k in (10, 50, 100)]
    return {
        "cells": [
            {"cell_type": "code", "source": ["x = 1"], "execution_count": 1,
             "metadata": {"papermill": {"start_time": "2026-12-06T09:00:00", "end_time": "t",
                                        "duration": 3.2, "status": "completed"},
                          "execution": {"iopub.execute_input": "t"}},
             "outputs": [
                 {"output_type": "stream", "name": "stderr", "text": [bar[0]]},
                 {"output_type": "stream", "name": "stderr", "text": [bar[1], bar[2] + "\n"]},
                 {"output_type": "stream", "name": "stdout",
                  "text": [f"model written to {root}/models/x/seed0 (best step 4)\n",
                           f"cache {home}/.cache/uwe/frozen, {root}_other stays\n",
                           "mirror: /somewhere/shared/data\n",
                           "2026-12-06 07:18:27,601 INFO uwe.bench.evaluation: MAP 85.6 "
                           "(119.2 s)\n"]},
                 {"output_type": "stream", "name": "stdout",
                  "text": ["2026-12-06 07:18:28,000 WARNING uwe.bench.latency: no ratio\n"]},
                 {"output_type": "execute_result", "execution_count": 1, "metadata": {},
                  "data": {"text/plain": [f"PosixPath('{root}/metrics/a.json')"]}}]},
            {"cell_type": "code", "id": "d2605ead", "source": ["# Parameters\nrun = 'sj'"],
             "execution_count": 2, "outputs": [],
             "metadata": {"tags": ["injected-parameters"]}},
            {"cell_type": "markdown", "id": "a5309faf", "source": ["# title"], "metadata": {}}],
        "metadata": {"papermill": {"start_time": "s", "end_time": "e", "duration": 9.0,
                                   "parameters": {"run": "sj"}}},
        "nbformat": 4, "nbformat_minor": 5}


def test_clean_keeps_results_and_drops_bars_logs_paths_and_times(tmp_path):
    root, home = "/somewhere/repo", "/home/someone"
    path = tmp_path / "run.ipynb"
    path.write_text(json.dumps(_notebook(root, home)))
    assert notebooks.clean_notebook(path, root, home) is True
    nb = json.loads(path.read_text())
    cell = nb["cells"][0]
    assert cell["metadata"] == {"papermill": {"status": "completed"}}
    assert nb["metadata"]["papermill"] == {"parameters": {"run": "sj"}}
    streams = [o for o in cell["outputs"] if o["output_type"] == "stream"]
    assert [o["name"] for o in streams] == ["stdout"]  # stderr (the bar) gone, stdout merged
    out = "".join(streams[0]["text"])
    assert "model written to ./models/x/seed0" in out and "~/.cache/uwe/frozen" in out
    assert "../repo_other stays" in out  # a folder beside it that starts like the root
    assert "mirror: ../shared/data" in out  # a folder beside the repository
    assert "INFO" not in out and "119.2 s" not in out  # a progress record and its seconds
    assert out.endswith("WARNING uwe.bench.latency: no ratio\n")  # kept, without its time
    assert cell["outputs"][-1]["data"]["text/plain"] == ["PosixPath('./metrics/a.json')"]
    # papermill's injected cell gets a random id per run; the notebook's own cells keep theirs
    assert [c.get("id") for c in nb["cells"]] == [None, "injected-parameters", "a5309faf"]
    before = path.read_bytes()
    assert notebooks.clean_notebook(path, root, home) is False  # idempotent
    assert path.read_bytes() == before


def test_clean_rejects_what_is_not_a_notebook_naming_it(tmp_path, capsys):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="bad.ipynb: not a notebook"):
        notebooks.clean_notebook(bad, tmp_path)
    assert bad.read_text() == "{not json"  # nothing rewritten
    assert notebooks.main(["clean", str(bad)]) == 1
    assert "bad.ipynb" in capsys.readouterr().err
    assert notebooks.main(["tidy"]) == 2


def test_strip_outputs_leaves_the_code_and_one_parameters_cell(tmp_path):
    path = tmp_path / "run.ipynb"
    path.write_text(json.dumps(_notebook("/somewhere/repo", "/home/someone")))
    assert notebooks.main(["clean", "--strip-outputs", str(path)]) == 0
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert code[0]["source"] == ["x = 1"] and "/somewhere" not in path.read_text()
