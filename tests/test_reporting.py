"""Results tables: percentages from the JSON fractions, markdown + CSV output."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest

from uwe.bench.evaluation import write_results
from uwe.pipeline import recipes, reporting
from uwe.pipeline.reporting import results_table, write_results_table


def _result(model, family, j2s, s2j, macro):
    tasks = {
        "skill2job": {"map": s2j, "rp@10": s2j + 0.1},
        "job2skill": {"map": j2s, "rp@10": j2s + 0.1},
        "skill_extraction_techwolf": {"map": 0.05, "rp@10": None},
    }
    return {
        "model": model,
        "family": family,
        "tasks": tasks,
        "groups": {"job2skill": {"map": j2s, "rp@10": j2s + 0.1}},
        "macro": {"map": macro, "rp@10": macro + 0.1},
    }


@pytest.fixture
def metrics_dir(tmp_path):
    root = tmp_path / "metrics" / "workbench"
    write_results(_result("bm25", "full", 0.0591, 0.137, 0.1), root / "full" / "bm25.json")
    write_results(
        _result("org/all-MiniLM-L6-v2", "full", 0.1244, 0.2801, 0.2),
        root / "full" / "all-MiniLM-L6-v2.json",
    )
    write_results(_result("bm25", "heldout", 0.05, 0.12, 0.09), root / "heldout" / "bm25.json")
    return root


def test_results_table_percentages_and_order(metrics_dir):
    df = results_table(metrics_dir)
    assert list(df["family"]) == ["full", "full", "heldout"]
    assert list(df["model"]) == ["org/all-MiniLM-L6-v2", "bm25", "bm25"]
    assert list(df.columns[2:]) == [
        "job2skill MAP",
        "job2skill RP@10",
        "skill2job MAP",
        "skill2job RP@10",
        "skill_extraction_techwolf MAP",
        "skill_extraction_techwolf RP@10",
        "macro MAP",
        "macro RP@10",
    ]
    row = df.iloc[0]
    assert row["job2skill MAP"] == 12.4 and row["skill2job RP@10"] == 38.0
    assert row["macro MAP"] == 20.0 and pd.isna(row["skill_extraction_techwolf RP@10"])
    groups = results_table(metrics_dir, families=("full",), level="group")
    assert list(groups.columns[2:]) == [
        "job2skill MAP",
        "job2skill RP@10",
        "macro MAP",
        "macro RP@10",
    ]
    with pytest.raises(ValueError, match="level"):
        results_table(metrics_dir, level="dataset")


def test_empty_and_broken_inputs(tmp_path):
    assert results_table(tmp_path).empty
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.json").write_text("{not json")
    with pytest.raises(ValueError, match="x.json"):
        results_table(tmp_path)


@pytest.mark.parametrize("with_tabulate", [True, False])
def test_write_results_table(metrics_dir, tmp_path, monkeypatch, with_tabulate):
    if not with_tabulate:
        monkeypatch.setitem(sys.modules, "tabulate", None)  # import tabulate -> ImportError
    df = results_table(metrics_dir)
    md, csv = write_results_table(df, tmp_path / "out" / "workbench_table")
    assert md.name == "workbench_table.md" and csv.name == "workbench_table.csv"
    text = md.read_text()
    assert "job2skill MAP" in text and "12.4" in text and text.count("\n") == len(df) + 2
    assert "nan" not in text.lower() and "–" in text
    back = pd.read_csv(csv)
    assert back.shape == df.shape and back.loc[0, "skill2job MAP"] == 28.0
    assert json.loads(json.dumps(list(back.columns)))[:2] == ["family", "model"]


def test_simple_markdown_escapes_pipes():
    df = pd.DataFrame({"model": ["a|b"], "x MAP": [float("nan")]})
    text = reporting._simple_markdown(df)
    assert "a\\|b" in text and "| – |" in text


def test_readme_section_is_replaced_between_the_markers(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nintro\n{reporting.RESULTS_START}\nold\n{reporting.RESULTS_END}\n"
                      "\n## after\n")
    (tmp_path / "figures").mkdir()
    body = reporting.results_section("| a |\n|---|\n| 1 |\n",
                                     {"a figure": tmp_path / "figures" / "f.png"},
                                     base_dir=tmp_path, profile="smoke")
    assert "![a figure](figures/f.png)" in body and "profile `smoke`" in body
    assert reporting.update_readme_results(readme, body) is True
    text = readme.read_text()
    assert text.startswith("# x\n\nintro\n") and text.endswith(f"{reporting.RESULTS_END}\n"
                                                               "\n## after\n")
    assert "old" not in text and "| 1 |" in text
    assert reporting.update_readme_results(readme, body) is False  # idempotent


def test_results_section_carries_the_claims_table(tmp_path):
    body = reporting.results_section("| a |\n|---|", {}, tmp_path, claims_md="| claim |\n|---|")
    assert body.index("| a |") < body.index("claims, checked") < body.index("| claim |")
    assert "claims" not in reporting.results_section("| a |\n|---|", {}, tmp_path)


@pytest.mark.parametrize("text", ["no markers", f"{reporting.RESULTS_END}\n"
                                  f"{reporting.RESULTS_START}\n",
                                  f"{reporting.RESULTS_START}\n{reporting.RESULTS_START}\n"
                                  f"{reporting.RESULTS_END}\n"])
def test_readme_without_a_proper_marker_pair_is_an_error(tmp_path, text):
    readme = tmp_path / "README.md"
    readme.write_text(text)
    with pytest.raises(ValueError, match="README.md"):
        reporting.update_readme_results(readme, "body")
    assert readme.read_text() == text


def test_the_repository_readme_has_one_results_section():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert text.count(reporting.RESULTS_START) == 1 and text.count(reporting.RESULTS_END) == 1
    assert text.index(reporting.RESULTS_START) < text.index(reporting.RESULTS_END)


def _recipe(folder, run, val, tasks, overrides, minutes=1.0, steps=10):
    (folder / f"{run}.json").write_text(json.dumps({
        "run": run, "overrides": overrides, "val_map": val, "val_tasks": tasks,
        "train_minutes": minutes, "steps": steps, "pairs_per_graph": {"sj": steps * 128}}))


def test_recipe_table_is_made_from_the_result_files(tmp_path):
    tasks = {"job2skill": 0.1, "skill2job": 0.3, "skill_extraction_house": 0.4,
             "skill_extraction_tech": 0.6}
    _recipe(tmp_path, "a", 0.40, tasks, {"lr": 1e-4})
    _recipe(tmp_path, "b", 0.45, {**tasks, "job2skill": 0.2}, {"scorer": "mean"}, 2.5)
    table = recipes.recipe_table(tmp_path)
    lines = table.strip().splitlines()
    assert lines[2].startswith("| b | scorer=mean | 45.00 | – | 20.0 |")  # best first
    assert "| 50.0 |" in lines[3]  # skill_extraction = mean of house and tech
    assert lines[2].endswith("| 2.5 | 1,280 | fp32 | – | – |")  # before precision was recorded
    _recipe(tmp_path, "c", 0.35, tasks, {"precision": "bf16"})
    rec = json.loads((tmp_path / "c.json").read_text())
    rec.update(precision="bf16", cpu={"cpu": "AMD EPYC 9R14 96-Core Processor",
                                      "avx512_bf16": True, "amx_bf16": False})
    (tmp_path / "c.json").write_text(json.dumps(rec))
    assert recipes.recipe_table(tmp_path).strip().splitlines()[-1].endswith(
        "| bf16 | AMD EPYC 9R14 (avx512_bf16) | – |")
    (tmp_path / "c.json").unlink()
    _recipe(tmp_path, "u", 0.30, tasks, {"scorer": "mean", "untuned": True}, 0.0, 0)
    assert "| b | scorer=mean | 45.00 | +15.00 |" in recipes.recipe_table(tmp_path)
    _recipe(tmp_path, "a", 0.50, tasks, {"lr": 1e-4})  # a result changes: so does the table
    assert recipes.recipe_table(tmp_path).strip().splitlines()[2].startswith("| a |")
    # SLI rows: softness beside them; the gain is against the untuned SLI at the same tau_a
    for run, val, tau, untuned in (("s30", 0.41, 30.0, False), ("u30", 0.37, 30.0, True),
                                   ("u01", 0.35, 0.1, True), ("old", 0.36, 0.1, False)):
        _recipe(tmp_path, run, val, tasks, {"scorer": "sli", **({"untuned": True} if untuned
                                                                else {})})
        rec = json.loads((tmp_path / f"{run}.json").read_text())
        rec["train"] = {"scorer": "sli", "attention_temperature": tau}
        if run != "old":
            rec["softness"] = {"attention": "raw", "temperature": tau, "max_weight": 0.37,
                               "entropy": 1.5, "entropy_fraction": 0.91}
        (tmp_path / f"{run}.json").write_text(json.dumps(rec))
    rows = {line.split(" | ")[0][2:]: line for line in
            recipes.recipe_table(tmp_path).strip().splitlines()[2:]}
    assert "| 41.00 | +4.00 |" in rows["s30"] and rows["s30"].endswith(
        "| max w 0.37, H/log Lt 0.91 |")
    assert "| 36.00 | +1.00 |" in rows["old"] and rows["old"].endswith("| not measured |")
    assert rows["b"].endswith("| – |")  # mean pooling: no attention
    with pytest.raises(FileNotFoundError, match="no recipe results"):
        recipes.recipe_table(tmp_path / "none")


def test_the_readme_recipe_table_is_the_one_generated_from_metrics(repo_root):
    """The recipe table lives in docs/training-on-a-cpu.md (the README links it)."""
    text = (repo_root / recipes.RECIPE_PAGE).read_text()
    start, end = text.index(recipes.RECIPES_START), text.index(recipes.RECIPES_END)
    body = text[start + len(recipes.RECIPES_START):end].strip()
    assert body == recipes.recipe_table(repo_root / "metrics" / "recipes").strip()
