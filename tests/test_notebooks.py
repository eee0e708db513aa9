"""Pipeline tier: every stage notebook runs through papermill on the `smoke` profile, in order,
inside a temporary project root (nothing is written to the repository)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from uwe.fetch import resolve_mirror

papermill = pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.pipeline


def run_notebook(notebook: str, root: Path, **parameters) -> Path:
    out = root / "executed" / f"{notebook}-{parameters.get('name', '')}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(REPO / "notebooks" / f"{notebook}.ipynb"),
        str(out),
        parameters={"root": str(root), "profile": "smoke", **parameters},
        cwd=str(REPO / "notebooks"),
        progress_bar=False,
        kernel_name="python3",
    )
    return out


@pytest.fixture(scope="module")
def smoke_root(tmp_path_factory):
    mirror = resolve_mirror(None, REPO)
    if mirror is None:
        pytest.skip("no data mirror (set UWE_DATA_MIRROR or place shared/data beside the repo)")
    root = tmp_path_factory.mktemp("smoke_project")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "data").mkdir()
    shutil.copy(REPO / "data" / "manifest.csv", root / "data" / "manifest.csv")
    old = os.environ.get("UWE_DATA_MIRROR")
    os.environ["UWE_DATA_MIRROR"] = str(mirror)
    try:
        run_notebook("00_fetch", root)
    finally:
        if old is None:
            os.environ.pop("UWE_DATA_MIRROR", None)
        else:
            os.environ["UWE_DATA_MIRROR"] = old
    return root


def test_fetch_notebook_verifies_every_file(smoke_root):
    from uwe.fetch import verify

    assert verify(smoke_root / "data" / "manifest.csv", smoke_root / "data" / "raw") == []


@pytest.fixture(scope="module")
def curated_root(smoke_root):
    run_notebook("01_curate", smoke_root)
    return smoke_root


def test_curate_notebook_writes_tasks_graphs_and_a_clean_audit(curated_root):
    report = json.loads((curated_root / "metrics" / "curation.json").read_text())
    assert report["leakage"], "the curation report has a leakage section"
    from uwe.tasks import list_tasks, load_task

    for family in ("full", "heldout", "zeroshot"):
        assert list_tasks(family, root=curated_root / "data" / "curated"), family
    ds = load_task("job2skill", "heldout", "test", root=curated_root / "data" / "curated")
    assert 0 < len(ds.queries) <= 40 and len(ds.targets) < 13_939  # capped (smoke profile)


def test_evaluate_notebook_scores_a_baseline(curated_root):
    run_notebook("03_evaluate", curated_root, model="tfidf_char", name="tfidf_char")
    for family in ("full", "heldout"):
        path = curated_root / "metrics" / "workbench" / family / "tfidf_char.json"
        res = json.loads(path.read_text())
        assert res["family"] == family
        assert 0.0 <= res["macro"]["map"] <= 1.0
        assert set(res["tasks"]) >= {"job2skill", "skill2job", "job_norm", "skill_norm"}


@pytest.fixture(scope="module")
def trained_root(curated_root):
    run_notebook("02_train", curated_root)
    return curated_root


def test_train_notebook_saves_a_loadable_model_and_a_curve(trained_root):
    from uwe.model import load

    folder = trained_root / "models" / "uwe"
    assert (folder / "model.safetensors").is_file() and (folder / "uwe_config.json").is_file()
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))
    summary = json.loads((trained_root / "metrics" / "train.json").read_text())
    assert summary["steps_done"] == 4
    log = (trained_root / "metrics" / "train_log.csv").read_text().splitlines()
    assert len(log) == 1 + 4  # header + one row per step
    model = load(folder, device="cpu")
    scores = model.score(["data scientist"], ["python", "nursing"])
    assert scores.shape == (1, 2)


@pytest.fixture(scope="module")
def evaluated_root(trained_root):
    run_notebook("03_evaluate", trained_root, model="models/uwe", name="uwe")
    return trained_root


def test_evaluate_notebook_scores_the_trained_model(evaluated_root):
    for family in ("full", "heldout"):
        path = evaluated_root / "metrics" / "workbench" / family / "uwe.json"
        res = json.loads(path.read_text())
        assert res["model"] == "uwe" and 0.0 <= res["macro"]["map"] <= 1.0


def test_figures_notebook_writes_tables_and_figures(evaluated_root):
    run_notebook("06_figures", evaluated_root)
    assert (evaluated_root / "metrics" / "results.md").read_text().count("|") > 10
    for stem in ("model_comparison_heldout", "model_comparison_full"):
        for ext in (".png", ".pdf"):
            assert (evaluated_root / "figures" / f"{stem}{ext}").stat().st_size > 1000
