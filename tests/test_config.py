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


@pytest.mark.parametrize("yaml_text,message", [
    ("train:\n  graphs:\n    sj: {weight: -1.0}\n",
     r"params\.train\.graphs\.sj\.weight must be >= 0, got -1\.0"),
    ("train:\n  warmup: 1.5\n", r"params\.train\.warmup must be from 0 to 1, got 1\.5"),
    ("train:\n  precision: fp16\n",
     r"params\.train\.precision must be one of auto, bf16, fp32, got 'fp16'"),
    ("train:\n  lr: .nan\n", r"params\.train\.lr must be > 0, got nan"),
    ("train:\n  scorer: sli2\n", r"params\.train\.scorer must be one of sli, mean"),
    ("train:\n  frozen_cache_dtype: int8\n", r"frozen_cache_dtype must be one of float16"),
    ("ablations:\n  runs:\n    x: {loss: infonce}\n",
     r"params\.ablations\.runs\.x\.loss must be one of one_to_one"),
    ("transfer:\n  budget: {steps: 0}\n", r"params\.transfer\.budget\.steps must be > 0"),
])
def test_a_value_out_of_its_range_is_refused_with_key_and_range(tmp_path, yaml_text, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ValueError, match=message):
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
    assert cpu.ablations.budget.seeds == (0, 1, 2)
    assert paper.ablations.budget.seeds == (0, 1, 2, 3, 4)  # the paper's 5
    assert cpu.ablations.runs["no_synthetic"].seeds == (0, 1)
    assert cpu.train.attention_temperature == 100.0 and paper.train.attention_temperature == 0.1
    assert paper.ablations.runs["no_synthetic"].seeds is None  # the group's 5
    assert smoke.transfer.budget.steps == 2 and smoke.ablations.budget.max_queries == 10
    assert paper.transfer.budget.max_queries is None and paper.transfer.budget.max_minutes is None
    assert set(cpu.latency.models) >= {"uwe", "all-MiniLM-L6-v2", "all-mpnet-base-v2"}
    assert cpu.train.scorer == "sli" == paper.train.scorer  # the paper's UWE on both
    assert "zeroshot" in cpu.evaluate.families


@pytest.mark.parametrize("profile", ["cpu", "paper"])
def test_analysis_budgets_can_decide_the_claims(profile):
    """The scorer and loss ablations (and their reference) run at least 3 seeds, the other
    trained runs at least 2, except the attention sweep's points (a grid, not a claim: one seed
    on cpu); the sweep spans the paper's 0.1 to the chosen temperature (three decades or more);
    on cpu every trained run has a wall-clock cap, and every run the main recipe. The budget
    curves: 3 seeds or more below the main model's steps, one point at them."""
    params = load_params(REPO / "params.yaml", profile=profile)
    for group in ("transfer", "ablations"):
        section = getattr(params, group)
        for name, run in section.runs.items():
            if run.model is not None:
                continue
            seeds = run.seeds or section.budget.seeds
            # the scorer / loss runs and the reference (the sweep also sets a scorer)
            decides = group == "ablations" and run.graphs is None and (
                run.attention_temperature is None)
            sweep = run.attention_temperature is not None
            least = 3 if decides else 1 if sweep and profile == "cpu" else 2
            assert len(set(seeds)) >= least, (group, name, seeds)
            cap = run.max_minutes if run.max_minutes is not None else section.budget.max_minutes
            assert profile != "cpu" or cap is not None, (group, name)
        assert section.budget.batch_size is None  # the main model's batch
    temps = {run.attention_temperature or params.train.attention_temperature
             for run in params.ablations.runs.values()
             if (run.scorer or params.train.scorer) == "sli" and run.model is None}
    assert 0.1 in temps and params.train.attention_temperature in temps
    assert max(temps) / min(temps) >= (1000 if profile == "cpu" else 1)
    assert any(run.scorer == "maxsim" for run in params.ablations.runs.values())  # tau -> 0
    assert any(run.scorer == "sli_cos" for run in params.ablations.runs.values())
    points = params.budgets.points
    assert [p.steps for p in points.values()][-1] == params.train.steps
    assert all(len(p.seeds) >= 3 for p in points.values() if p.steps < params.train.steps)
    assert profile != "cpu" or all(p.steps > params.ablations.budget.steps for p in points.values())
    assert profile != "cpu" or all(p.max_minutes for p in points.values())


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


def test_profile_budget_points_modify_points_and_never_add_one(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("budgets:\n  points: {mid: {steps: 48, seeds: [0, 1, 2]}}\n"
                    "profiles:\n  smoke:\n    budgets:\n"
                    "      points: {mid: {steps: 3}, late: {steps: 9}}\n")
    with pytest.warns(UserWarning, match=r"profiles\.smoke\.budgets\.points\.late .* ignored"):
        smoke = load_params(path, profile="smoke")
    assert list(smoke.budgets.points) == ["mid"]
    assert smoke.budgets.points["mid"].steps == 3 and smoke.budgets.points["mid"].seeds == (0, 1, 2)


def test_repo_profiles_override_only_runs_that_exist(recwarn):
    for profile in ("smoke", "cpu", "paper"):
        load_params(REPO / "params.yaml", profile=profile)
    assert not [w for w in recwarn if "params:" in str(w.message)]
