"""The pipeline's contract: every DVC stage runs its notebook with papermill and depends on every
`uwe` module its notebook can import, and every notebook has exactly one `parameters` cell, no
outputs, no absolute paths and no function definitions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from uwe.config import PROFILES
from uwe.runtime import uwe_imports

REPO = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CMD = re.compile(
    r"^papermill --cwd notebooks (?P<nb>notebooks/\d\d_\w+\.ipynb) "
    r"(?P<out>notebooks/executed/\S+\.ipynb)(?P<rest>.*)$"
)


def _stage_items():
    for name, stage in STAGES.items():
        if "foreach" in stage:
            yield name, stage["do"]
        else:
            yield name, stage


@pytest.mark.parametrize("name,stage", list(_stage_items()), ids=[n for n, _ in _stage_items()])
def test_stage_runs_its_notebook_with_papermill(name, stage):
    match = CMD.match(stage["cmd"])
    assert match, f"stage {name}: cmd must be 'papermill --cwd notebooks NN_x.ipynb ...': {stage}"
    assert match["nb"] in stage["deps"], f"stage {name}: its notebook must be a dependency"
    assert match["out"] in _outs(stage), f"stage {name}: the executed notebook must be an output"
    assert "profile" in stage.get("params", []), f"stage {name}: must depend on `profile`"


@pytest.mark.parametrize("name,stage", list(_stage_items()), ids=[n for n, _ in _stage_items()])
def test_papermill_passes_only_declared_parameters_and_the_result_is_committed(name, stage):
    """No "Passed unknown parameter" line: each `-p` names a variable of the notebook's
    parameters cell (params.yaml is read by the notebook itself, never injected whole); the
    executed notebook is cleaned by the command and committed (cache: false)."""
    match = CMD.match(stage["cmd"])
    nb = json.loads((REPO / match["nb"]).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    # papermill's own reading of the cell (it skips a line with a second "=", e.g. in a comment,
    # and then calls that parameter unknown)
    from papermill.translators import PythonTranslator

    declared = {p.name for p in PythonTranslator.inspect({"source": "".join(cell["source"])})}
    assigned = set(re.findall(r"^(\w+)\s*=", "".join(cell["source"]), re.M))
    assert declared == assigned, f"{match['nb']}: papermill cannot read {assigned - declared}"
    passed = re.findall(r" -p (\w+) ", match["rest"])
    assert " -f " not in match["rest"] and set(passed) <= declared, (name, passed, declared)
    clean = "python -m uwe.pipeline.notebooks clean"
    assert re.search(rf"&& {re.escape(clean)}( --strip-outputs)? {re.escape(match['out'])}$",
                     stage["cmd"]), f"stage {name}: the command must clean {match['out']}"
    out = next(o for o in stage.get("outs", []) if isinstance(o, dict) and match["out"] in o)
    assert out[match["out"]].get("cache") is False, f"stage {name}: commit {match['out']}"


def test_every_notebook_belongs_to_a_stage():
    used = {CMD.match(stage["cmd"])["nb"] for _, stage in _stage_items()}
    assert {f"notebooks/{p.name}" for p in NOTEBOOKS} == used


def _outs(stage) -> list[str]:
    return [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]


def test_every_dependency_exists_or_is_produced_by_a_stage():
    produced = {out for _, stage in _stage_items() for out in _outs(stage)}
    produced |= {
        next(iter(m)) for _, stage in _stage_items() for m in stage.get("metrics", [])
    }

    def is_produced(dep: str) -> bool:  # an output, a folder that holds outputs, or a path
        return any(out == dep or out.startswith(dep.rstrip("/") + "/")  # inside an output
                   or dep.startswith(out.rstrip("/") + "/") for out in produced)

    for name, stage in _stage_items():
        for dep in stage.get("deps", []):
            if "${" not in dep and not is_produced(dep):
                assert (REPO / dep).exists(), f"stage {name}: missing dependency {dep}"


def _uwe_imports(source: str) -> set[str]:
    """``uwe`` modules imported anywhere in ``source`` (function-level imports included)."""
    return uwe_imports(source)


def _module_file(module: str) -> str | None:
    for rel in (module.replace(".", "/") + ".py", module.replace(".", "/") + "/__init__.py"):
        if (REPO / rel).is_file():
            return rel
    return None  # a name imported from a module, not a module


def _import_closure(source: str) -> set[str]:
    """Repository paths of the ``uwe`` modules ``source`` imports, directly or through others."""
    seen: set[str] = set()
    todo = list(_uwe_imports(source))
    while todo:
        path = _module_file(todo.pop())
        if path is not None and path not in seen:
            seen.add(path)
            todo += _uwe_imports((REPO / path).read_text())
    return {p for p in seen if not p.endswith("/__init__.py")}  # docstrings, no imports


@pytest.mark.parametrize("name,stage", list(_stage_items()), ids=[n for n, _ in _stage_items()])
def test_stage_depends_on_every_module_its_notebook_imports(name, stage):
    """A change to any module a stage's notebook can reach re-runs the stage (`dvc status`)."""
    nb = json.loads((REPO / CMD.match(stage["cmd"])["nb"]).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    missing = sorted(_import_closure(code) - set(stage["deps"]))
    assert not missing, f"stage {name}: add to its deps in dvc.yaml: {missing}"


def test_package_inits_import_no_module():
    """Why the closures leave the packages' __init__.py out: they hold docstrings (and the lazy
    public API of uwe/__init__.py), so editing one never needs a stage to re-run."""
    for init in sorted((REPO / "uwe").rglob("__init__.py")):
        assert not _uwe_imports(init.read_text()), f"{init.relative_to(REPO)} imports uwe code"


def test_import_closure_follows_imports_inside_functions():
    assert _import_closure("from uwe.pipeline.analyses import run_spec\n") >= {
        "uwe/pipeline/analyses.py", "uwe/config.py", "uwe/train/loop.py", "uwe/model/uwe_model.py"}
    assert _import_closure("import json\n") == set()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_shape(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: exactly one cell tagged 'parameters'"
    assert tagged[0] is code[0], f"{path.name}: the parameters cell is the first code cell"
    for cell in code:
        assert not cell.get("outputs"), f"{path.name}: committed with outputs"
        assert cell.get("execution_count") is None, f"{path.name}: committed with counts"
        src = "".join(cell["source"])
        assert not re.search(r"^\s*def |^\s*class ", src, re.M), f"{path.name}: logic in uwe/"
        assert not re.search(r"^\s*[!%]pip", src, re.M), f"{path.name}: no pip in notebooks"
        assert not re.search(r"['\"]/(home|work|root|tmp|Users)/", src), f"{path.name}: abs path"


PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())


def _metrics(stage) -> list[str]:
    return [next(iter(m)) if isinstance(m, dict) else m for m in stage.get("metrics", [])]


def test_every_evaluated_family_is_a_declared_metric():
    for family in PARAMS["evaluate"]["families"]:
        assert f"metrics/workbench/{family}/${{key}}.json" in _metrics(STAGES["baselines"]["do"])
        assert f"metrics/workbench/{family}/uwe.json" in _metrics(STAGES["evaluate"])


@pytest.mark.parametrize("group", ["transfer", "ablations"])
def test_analysis_stages_run_one_instance_per_configured_run(group):
    stage = STAGES[group]
    assert stage["foreach"] == f"${{{group}.runs}}" and PARAMS[group]["runs"]
    do = stage["do"]
    assert f"-p group {group} -p run ${{key}}" in do["cmd"]
    profile_keys = {f"profiles.{p}.{sec}" for p in PROFILES for sec in ("train", group)}
    wanted = {f"{group}.budget", f"{group}.runs.${{key}}", "train"} | profile_keys
    assert wanted <= set(do["params"])
    assert {f"models/{group}/${{key}}", f"metrics/{group}/${{key}}.json"} <= set(_outs(do))
    assert f"metrics/{group}" in STAGES["figures"]["deps"]


def test_budget_curves_are_a_matrix_of_ablation_runs_with_committed_outputs_only():
    """budgets@<run>-<point>: one instance per (run of budgets.runs, point); every output is a
    committed file (cache: false) and none is a model, so that a fresh clone's dvc repro finds
    the instances up to date instead of training them again for hours."""
    stage = STAGES["budgets"]
    assert stage["matrix"] == {"run": "${budgets.runs}", "point": "${budgets.points}"}
    assert "-p group budgets -p run ${item.run} -p point ${item.point}" in stage["cmd"]
    out = "notebooks/executed/04_variant_budgets_${item.run}-${item.point}.ipynb"
    cleaner = "python -m uwe.pipeline.notebooks clean --strip-outputs"
    assert stage["cmd"].endswith(f" && {cleaner} {out}")
    assert "uwe/pipeline/notebooks.py" in stage["deps"]
    runs = PARAMS["budgets"]["runs"]
    assert runs and set(runs) <= set(PARAMS["ablations"]["runs"])
    assert all(PARAMS["ablations"]["runs"][r].get("model") is None for r in runs)
    assert set(PARAMS["budgets"]["publish"].values()) <= set(runs)
    outs = [*stage["outs"], *stage["metrics"]]
    assert all(isinstance(o, dict) and next(iter(o.values())) == {"cache": False} for o in outs)
    assert not any(next(iter(o)).startswith("models/") for o in outs)
    assert {"ablations.runs.${item.run}", "budgets.points.${item.point}", "budgets.publish",
            "train", "evaluate"} <= set(stage["params"])
    assert "metrics/budgets" in STAGES["figures"]["deps"]
    assert not (REPO / "notebooks" / "executed" / ".gitignore").exists()  # all committed


def test_figures_stage_collects_lists_and_persists_the_readme():
    figures = STAGES["figures"]
    assert {"metrics/transfer.json", "metrics/ablations.json",
            "metrics/zeroshot.json"} <= set(_metrics(figures))
    pngs = {o for o in _outs(figures) if o.endswith(".png")}
    plots = {p if isinstance(p, str) else next(iter(p))
             for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"]}
    assert pngs and pngs <= plots, "every figure is listed under the top-level plots"
    assert {p[:-4] + ".pdf" for p in pngs} <= set(_outs(figures))
    readme = next(o["README.md"] for o in figures["outs"] if isinstance(o, dict)
                  and "README.md" in o)
    assert readme == {"cache": False, "persist": True}
    assert "metrics/latency.json" in _metrics(STAGES["latency"])


def test_profile_params_are_tracked_for_every_profile():
    """A stage that depends on a profile section lists it for every profile, and each profile
    names that section in params.yaml (DVC needs the key to exist)."""
    for name, stage in STAGES.items():
        spec = stage.get("do", stage)
        keys = [k for k in spec.get("params", [])
                if isinstance(k, str) and k.startswith("profiles")]
        assert "profiles" not in keys, (
            f"{name}: depends on every profile; list profiles.<p>.<section>")
        sections = {k.split(".")[2] for k in keys}
        for sec in sections:
            for p in PROFILES:
                assert f"profiles.{p}.{sec}" in keys, (name, p, sec)
                assert sec in PARAMS["profiles"][p], f"params.yaml: profiles.{p} lacks {sec!r}"


def test_train_stage_depends_on_the_training_code_alone():
    """`train` (and its checkpoint fingerprint) follow the training code only, so a tidy-up of
    plotting, evaluation or the CLI does not retrain the model."""
    from uwe.train.checkpoint import training_sources

    stage = STAGES["train"]
    nb = json.loads((REPO / CMD.match(stage["cmd"])["nb"]).read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    deps = {d for d in stage["deps"] if d.startswith("uwe/")}
    # and the cleaner its command runs on the executed notebook (it reaches the base alone)
    assert deps == _import_closure(code + "\nimport uwe.pipeline.notebooks")
    assert _import_closure("import uwe.pipeline.notebooks") == {
        "uwe/pipeline/notebooks.py", "uwe/io.py", "uwe/errors.py"}
    fingerprinted = {p.relative_to(REPO).as_posix() for p in training_sources()}
    assert fingerprinted <= deps and "uwe/train/loop.py" in fingerprinted
    figures_code = {"uwe/pipeline/plotting.py", "uwe/pipeline/reporting.py",
                    "uwe/pipeline/results.py", "uwe/pipeline/claims.py", "uwe/bench/evaluation.py",
                    "uwe/cli.py", "uwe/infer/ranker.py", "uwe/infer/ort.py"}
    assert not figures_code & (deps | fingerprinted)


def test_every_stage_depends_on_its_import_closure_exactly():
    """scripts/stage_deps.py writes each stage's uwe/ deps from its notebook's import closure (and
    the modules its command runs with `python -m`): a stage depends on no module it cannot reach
    (a serving change does not retrain), and the tool has nothing to change in dvc.yaml."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("stage_deps", REPO / "scripts" / "stage_deps.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    text = (REPO / "dvc.yaml").read_text(encoding="utf-8")
    new, changed = tool.rewrite(text, tool.wanted(REPO, REPO / "dvc.yaml"))
    assert changed == [] and new == text, f"run scripts/stage_deps.py --write: {changed}"
    # the tool sees a stale line: drop one dep of train and it puts it back
    broken = text.replace("      - uwe/train/loop.py\n", "", 1)
    fixed, changed = tool.rewrite(broken, tool.wanted(REPO, REPO / "dvc.yaml"))
    assert changed == ["train"] and fixed == text
