"""Pipeline tier: every stage notebook runs through papermill on the `smoke` profile, in order,
inside a temporary project root (nothing is written to the repository). The analyses run a
subset of their configured runs (ANALYSIS_RUNS) to keep the tier short; tests/test_analyses.py
checks that every configured run resolves."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from uwe.data.fetch import resolve_mirror

papermill = pytest.importorskip("papermill")

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.pipeline
# analysis runs executed here: each kind of run (untuned backbone, one graph, an existing model,
# the reference and one override with two seeds); and two latency models (SLI + its backbone)
ANALYSIS_RUNS = {"transfer": ("untuned", "sj", "all"), "ablations": ("reference", "scorer_mean")}
# budget curves: both runs at both points (main = the smoke train.steps: scorer_mean publishes)
BUDGET_RUNS = ("reference", "scorer_mean")
LATENCY_MODELS = ("uwe", "all-MiniLM-L6-v2")


def run_notebook(notebook: str, root: Path, tag: str = "", **parameters) -> Path:
    out = root / "executed" / f"{notebook}-{tag or parameters.get('name', '')}.ipynb"
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
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for group, keep in ANALYSIS_RUNS.items():
        params[group]["runs"] = {k: v for k, v in params[group]["runs"].items() if k in keep}
        # the profiles' overrides of the removed runs (smoke's `sv`) stay: uwe.config drops them
    params["budgets"]["runs"] = list(BUDGET_RUNS)
    params["latency"]["models"] = {k: v for k, v in params["latency"]["models"].items()
                                   if k in LATENCY_MODELS}
    params["train"]["frozen_cache_dir"] = str(root / "frozen_cache")  # never the user's cache
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.copy(REPO / "README.md", root / "README.md")
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
    from uwe.data.fetch import verify

    assert verify(smoke_root / "data" / "manifest.csv", smoke_root / "data" / "raw") == []


@pytest.fixture(scope="module")
def curated_root(smoke_root):
    run_notebook("01_curate", smoke_root)
    return smoke_root


def test_curate_notebook_writes_tasks_graphs_and_a_clean_audit(curated_root):
    report = json.loads((curated_root / "metrics" / "curation.json").read_text())
    assert report["leakage"], "the curation report has a leakage section"
    from uwe.data.tasks import list_tasks, load_task

    for family in ("full", "heldout", "zeroshot"):
        assert list_tasks(family, root=curated_root / "data" / "curated"), family
    ds = load_task("job2skill", "heldout", "test", root=curated_root / "data" / "curated")
    assert 0 < len(ds.queries) <= 40 and len(ds.targets) < 13_939  # capped (smoke profile)


def test_an_executed_notebook_is_the_same_bytes_when_its_stage_runs_again(curated_root):
    """The executed copy is a committed result: cleaned (uwe.pipeline.notebooks, the last step
    of every stage's command), a second run of an unchanged stage writes the same bytes -- no
    progress bar, log time, duration, absolute path or papermill timestamp survives -- while
    the results it displays do."""
    from uwe.pipeline.notebooks import clean_notebook

    runs = []
    written = [curated_root / "metrics" / "workbench" / family / "bm25_twice.json"
               for family in ("full", "heldout", "zeroshot")]
    try:
        for _ in range(2):
            out = run_notebook("03_evaluate", curated_root, tag="twice", model="bm25",
                               name="bm25_twice")
            clean_notebook(out, curated_root)
            runs.append(out.read_bytes())
    finally:  # the later stages of this module read every result in metrics/workbench
        for path in written:
            path.unlink(missing_ok=True)
    changed = [(a, b) for a, b in zip(runs[0].decode().splitlines(), runs[1].decode().splitlines(),
                                      strict=False)
               if a != b]
    assert runs[0] == runs[1], changed[:5]
    text = runs[0].decode("utf-8")
    nb = json.loads(text)
    shown = "".join("".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", ""))
                    for c in nb["cells"] for o in c.get("outputs", []))
    assert "job2skill" in shown and "MAP" in shown  # the results table is there
    assert str(curated_root) not in shown and "it/s" not in shown and " INFO " not in shown
    assert "start_time" not in text and "duration" not in text
    # it opens with what the run found (the last cell's text, in the first output)
    from uwe.pipeline.findings import PENDING

    first = next(o for c in nb["cells"] for o in c.get("outputs", []))
    opening = "".join(first["data"]["text/markdown"])
    assert opening.startswith("**What this run found.** `bm25_twice` — full: macro MAP ")
    assert PENDING not in text


def test_evaluate_notebook_scores_a_baseline(curated_root):
    run_notebook("03_evaluate", curated_root, model="tfidf_char", name="tfidf_char")
    zeroshot = json.loads(
        (curated_root / "metrics" / "workbench" / "zeroshot" / "tfidf_char.json").read_text())
    assert zeroshot["groups"] == {} and zeroshot["macro"]["map"] is None
    assert set(zeroshot["tasks"]) == {"onet_job2skill", "onet_skill2job", "skillsfuture_norm"}
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
    from uwe.model.uwe_model import load

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


@pytest.fixture(scope="module")
def analysed_root(evaluated_root):
    for group, runs in ANALYSIS_RUNS.items():
        for run in runs:
            run_notebook("04_variant", evaluated_root, tag=f"{group}_{run}", group=group, run=run)
    for run in BUDGET_RUNS:
        for point in ("mid", "main"):
            run_notebook("04_variant", evaluated_root, tag=f"budgets_{run}-{point}",
                         group="budgets", run=run, point=point)
    old = os.environ.get("UWE_CACHE_DIR")
    os.environ["UWE_CACHE_DIR"] = str(evaluated_root / "cache")  # ONNX exports: not the user's
    try:
        run_notebook("07_latency", evaluated_root)
    finally:
        if old is None:
            os.environ.pop("UWE_CACHE_DIR", None)
        else:
            os.environ["UWE_CACHE_DIR"] = old
    return evaluated_root


def test_variant_notebook_trains_and_scores_each_kind_of_run(analysed_root):
    from uwe.config import load_params
    from uwe.pipeline.analyses import macro_tasks

    params = load_params(analysed_root / "params.yaml", profile="smoke")
    tasks = macro_tasks(analysed_root / "data" / "curated")
    for group, runs in ANALYSIS_RUNS.items():
        budget = getattr(params, group).budget
        for run in runs:
            res = json.loads((analysed_root / "metrics" / group / f"{run}.json").read_text())
            assert res["group"] == group and res["run"] == run and res["tasks"] == tasks
            trained = getattr(params, group).runs[run].model is None
            assert [e["seed"] for e in res["seeds"]] == (
                list(budget.seeds) if trained else [None])
            run_dir = analysed_root / "models" / group / run
            assert (run_dir / "run.json").is_file()
            for entry in res["seeds"]:
                ev = entry["evaluation"]
                assert 0.0 <= ev["macro"]["map"] <= 1.0 and ev["max_queries"] == 10
                assert all(t["n_queries"] <= 10 for t in ev["tasks"].values())
                if trained:
                    assert entry["training"]["steps_done"] == budget.steps
                    assert (run_dir / f"seed{entry['seed']}" / "model.safetensors").is_file()
            assert not list(run_dir.glob("*.ckpt")), "checkpoints are removed after training"
    sj = json.loads((analysed_root / "metrics" / "transfer" / "sj.json").read_text())
    assert sj["train"]["graphs"].keys() == {"sj"} and sj["model_info"]["graphs"] == ["sj"]
    mean = json.loads((analysed_root / "metrics" / "ablations" / "scorer_mean.json").read_text())
    assert mean["model_info"]["scorer"] == "mean"
    ref = json.loads((analysed_root / "metrics" / "ablations" / "reference.json").read_text())
    assert ref["model_info"]["scorer"] == "sli"  # the main recipe's


def test_budget_runs_score_each_point_keep_only_the_published_model(analysed_root):
    from uwe.config import load_params

    params = load_params(analysed_root / "params.yaml", profile="smoke")
    for run in BUDGET_RUNS:
        for point, budget in params.budgets.points.items():
            res = json.loads((analysed_root / "metrics" / "budgets" / f"{run}-{point}.json")
                             .read_text())
            assert res["group"] == "budgets" and res["point"] == point
            assert [e["seed"] for e in res["seeds"]] == list(budget.seeds)
            assert all(e["training"]["steps_done"] == budget.steps for e in res["seeds"])
            assert res["pairs_per_graph"]["sj"] == budget.steps * params.train.batch_size
            sli = run == "reference"  # the main recipe trains SLI
            for e in res["seeds"]:
                soft = e["softness"]
                assert (soft is not None) == sli
                if sli:
                    assert soft["attention"] == "raw" and 0 < soft["max_weight"] <= 1
            published = run == "scorer_mean" and point == "main"
            assert ("published" in res) == published
            kept = sorted(p.name for p in (analysed_root / "models" / "budgets" / f"{run}-{point}")
                          .glob("seed*"))
            assert kept == (["seed0"] if published else [])
            if published:
                assert res["published"]["name"] == "uwe-mean"
                assert set(res["published"]["families"]) == set(params.evaluate.families)


def test_latency_notebook_times_uwe_and_its_backbone(analysed_root):
    report = json.loads((analysed_root / "metrics" / "latency.json").read_text())
    assert report["engines"] == ["torch", "onnx"]
    # every model through both engines, and UWE's own encoder mean-pooled (its SLI twin)
    assert set(report["models"]) == {*LATENCY_MODELS, *(f"{m}@onnx" for m in LATENCY_MODELS),
                                     "uwe:mean@onnx"}
    for name, entry in report["models"].items():
        assert entry["latency_ms"]["median"] > 0 and entry["parameters"] > 1_000_000
        assert entry["engine"] == ("onnx" if name.endswith("@onnx") else "torch")
        if entry["engine"] == "onnx":  # query encoding and scoring timed apart
            assert entry["encode_ms"]["median"] > 0 and entry["score_ms"]["median"] > 0
    twin = report["models"]["uwe:mean@onnx"]
    assert twin["scorer"] == "mean" and twin["twin_of"] == "uwe"
    assert report["models"]["uwe@onnx"]["target_layout"] == "int8_block"
    assert report["ratios"]["uwe"]["mean_pooled"] == "all-MiniLM-L6-v2"
    assert report["ratios"]["uwe@onnx"]["mean_pooled"] == "uwe:mean@onnx"
    assert report["ratios"]["uwe:mean@onnx"]["mean_pooled"] == "all-MiniLM-L6-v2@onnx"
    assert report["sli_over_mean"] == report["ratios"]["uwe@onnx"]["latency_ratio"] > 0
    assert report["task"] == "job2skill" and report["isa"]["cpu"]


def test_figures_notebook_writes_tables_figures_and_the_readme(analysed_root):
    run_notebook("06_figures", analysed_root)
    assert (analysed_root / "metrics" / "results.md").read_text().count("|") > 10
    for stem in ("model_comparison_heldout", "model_comparison_full", "training_curve",
                 "transfer_heatmap", "ablations", "latency_vs_map", "zeroshot", "budgets_scorer",
                 "budgets_loss"):
        for ext in (".png", ".pdf"):
            assert (analysed_root / "figures" / f"{stem}{ext}").stat().st_size > 1000, stem
    metrics = analysed_root / "metrics"
    transfer = json.loads((metrics / "transfer.json").read_text())
    assert transfer["order"] == list(ANALYSIS_RUNS["transfer"])
    assert transfer["columns"][-1] == "macro" and transfer["rows"]["all"]["model"] == "models/uwe"
    ablations = json.loads((metrics / "ablations.json").read_text())
    assert [e["value"] for e in ablations["axes"]["scorer"]] == ["mean", "sli"]
    assert ablations["axes"]["loss"][0]["map_std"] is not None  # two smoke seeds
    zeroshot = json.loads((metrics / "zeroshot.json").read_text())
    assert set(zeroshot["models"]) == {"tfidf_char", "uwe", "uwe-mean"}  # uwe-mean: published
    budgets = json.loads((metrics / "budgets.json").read_text())
    assert [e["point"] for e in budgets["curves"]["reference"]] == ["ablations", "mid", "main"]
    assert budgets["curves"]["reference"][0]["softness"]["attention"] == "raw"
    claims_md = (metrics / "claims.md").read_text()
    assert "The shipped model's scorer**: val macro MAP at 4 steps" in claims_md
    for stem in ("budgets_scorer", "budgets_loss"):
        assert (analysed_root / "figures" / f"{stem}.png").stat().st_size > 1000
    rows = (metrics / "results.csv").read_text().splitlines()
    assert any(r.startswith("heldout,uwe-mean,") for r in rows)
    assert any(r.startswith("full,uwe-mean,") for r in rows)
    readme = (analysed_root / "README.md").read_text()
    section = readme.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    assert "](figures/transfer_heatmap.png)" in section and "| heldout" in section
    assert "profile `smoke`" in section
    assert readme.split("<!-- results:start -->")[0] == (REPO / "README.md").read_text().split(
        "<!-- results:start -->")[0]


def test_the_walkthrough_tells_each_claim_from_the_committed_results(analysed_root):
    """notebooks/05_paper.ipynb (stage `paper`), run after the figures: every claim of
    metrics/claims.json with its verdict, in the paper's order, the figures inline."""
    from uwe.pipeline.notebooks import clean_notebook

    out = run_notebook("05_paper", analysed_root, tag="paper")
    clean_notebook(out, analysed_root)
    nb = json.loads(out.read_text())
    shown = [o for c in nb["cells"] for o in c.get("outputs", [])]
    text = "".join("".join(o.get("data", {}).get("text/markdown", "")) for o in shown)
    claims = json.loads((analysed_root / "metrics" / "claims.json").read_text())
    titles = [claims["claims"][c]["claim"] for c in claims["order"]]
    positions = [text.find(f"**{t}.**") for t in titles]
    assert all(p >= 0 for p in positions), titles
    for c in claims["order"]:
        assert f"**{claims['claims'][c]['verdict']}**" in text
    assert text.index("WorkBench") < text.index("The tasks share structure") < text.index(
        "Unseen target spaces")
    assert sum("image/png" in o.get("data", {}) for o in shown) >= 5  # the figures inline
