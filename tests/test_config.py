from pathlib import Path

import pytest

from uwe.config import Params, deep_merge, load_params

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_load_for_every_profile():
    for profile in ("smoke", "cpu", "paper"):
        params = load_params(REPO / "params.yaml", profile=profile)
        assert isinstance(params, Params)
        assert params.profile == profile


def test_profile_overrides_are_deep_merged(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(
        "profile: cpu\ncurate:\n  max_queries: null\n  split_seed: 7\n"
        "profiles:\n  smoke:\n    curate:\n      max_queries: 5\n"
    )
    assert load_params(path).curate.max_queries is None
    smoke = load_params(path, profile="smoke")
    assert smoke.curate.max_queries == 5
    assert smoke.curate.split_seed == 7  # untouched keys survive the merge


def test_unknown_key_is_rejected_with_its_dotted_path(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("curate:\n  max_querys: 3\n")
    with pytest.raises(ValueError, match=r"params\.curate\.max_querys"):
        load_params(path)


def test_wrong_type_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("curate:\n  split_seed: abc\n")
    with pytest.raises(ValueError, match=r"curate\.split_seed must be an integer"):
        load_params(path)


def test_unknown_profile_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: gpu\n")
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        load_params(path)


def test_params_are_frozen():
    params = load_params(REPO / "params.yaml")
    with pytest.raises(AttributeError):
        params.seed = 3  # type: ignore[misc]


def test_deep_merge_does_not_mutate_inputs():
    base = {"a": {"b": 1, "c": 2}}
    out = deep_merge(base, {"a": {"b": 5}})
    assert out == {"a": {"b": 5, "c": 2}}
    assert base == {"a": {"b": 1, "c": 2}}


def test_analysis_sections_load_typed_with_profile_budgets():
    smoke, cpu, paper = (load_params(REPO / "params.yaml", profile=p)
                         for p in ("smoke", "cpu", "paper"))
    assert list(cpu.transfer.runs) == ["untuned", "sj", "sv", "sa", "jj", "ss", "all"]
    assert cpu.transfer.runs["sj"].graphs == ("sj",)
    assert cpu.transfer.runs["untuned"].model == "untuned"
    assert cpu.ablations.runs["reference"].scorer is None
    assert cpu.ablations.budget.seeds == (0,) and paper.ablations.budget.seeds == (0, 1, 2)
    assert smoke.transfer.budget.steps == 2 and smoke.ablations.budget.max_queries == 10
    assert paper.transfer.budget.max_queries is None and paper.transfer.budget.max_minutes is None
    assert set(cpu.latency.models) >= {"uwe", "all-MiniLM-L6-v2", "all-mpnet-base-v2"}
    assert "zeroshot" in cpu.evaluate.families


def test_cpu_budgets_fit_45_minutes_per_group():
    """Caps of the trained runs (a run's own cap or the group's) + ~1.5 min per evaluation
    (2 cores), per analysis group."""
    cpu = load_params(REPO / "params.yaml", profile="cpu")
    for section in (cpu.transfer, cpu.ablations):
        trained = [r for r in section.runs.values() if r.model is None]
        budget = section.budget
        caps = [budget.max_minutes if r.max_minutes is None else r.max_minutes for r in trained]
        assert None not in caps
        worst = (len(budget.seeds) * sum(caps)
                 + 1.5 * (len(section.runs) - len(trained) + len(trained) * len(budget.seeds)))
        assert worst <= 45, (section, worst)


def test_unknown_key_in_an_analysis_run_is_rejected(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("transfer:\n  runs:\n    sj: {graph: [sj]}\n")
    with pytest.raises(ValueError, match=r"params\.transfer\.runs\.sj\.graph"):
        load_params(path)
    path.write_text("ablations:\n  budget:\n    seeds: 3\n")
    with pytest.raises(ValueError, match=r"ablations\.budget\.seeds must be a list"):
        load_params(path)


def test_profile_run_overrides_modify_runs_and_never_add_one(tmp_path):
    """A user who removes a run from `transfer.runs` does not get it back from a profile's
    override of that run (the pipeline has one stage per base run); the override is named."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "transfer:\n  runs:\n    sj: {graphs: [sj]}\n"
        "profiles:\n  smoke:\n    transfer:\n"
        "      runs: {sj: {max_minutes: 2}, sv: {max_minutes: null}}\n"
    )
    with pytest.warns(UserWarning, match=r"profiles\.smoke\.transfer\.runs\.sv .* ignored"):
        smoke = load_params(path, profile="smoke")
    assert list(smoke.transfer.runs) == ["sj"]
    assert smoke.transfer.runs["sj"].graphs == ("sj",)  # the override modifies, keeps the rest
    assert smoke.transfer.runs["sj"].max_minutes == 2
    assert "sv" in path.read_text()  # nothing of the file is rewritten
    path.write_text("transfer: {budget: {steps: 3}}\n"  # no runs at all: nothing to override
                    "profiles:\n  smoke:\n    transfer: {runs: {sv: {}}}\n")
    with pytest.warns(UserWarning, match=r"transfer\.runs\.sv"):
        assert load_params(path, profile="smoke").transfer.runs == {}


def test_repo_profiles_override_only_runs_that_exist(recwarn):
    for profile in ("smoke", "cpu", "paper"):
        load_params(REPO / "params.yaml", profile=profile)
    assert not [w for w in recwarn if "params:" in str(w.message)]
