"""uwe.cli in-process on a tiny curated folder and a tiny random-BERT UWE model."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from uwe import cli, runtime
from uwe.bench.evaluation import evaluate
from uwe.data.curation import write_dataset
from uwe.data.dataset import RankingDataset
from uwe.infer.index_cache import FORMAT_VERSION
from uwe.model.uwe_model import UWEModel, load, save

QUERIES = ["data scientist", "baker", "truck driver", "nurse", "software developer"]
TARGETS = [
    "python programming",
    "bake bread",
    "drive a truck",
    "care for patients",
    "statistics",
    "manage a team",
    "use spreadsheets",
    "sql",
    "knead dough",
    "logistics",
    "first aid",
    "machine learning",
]
POSITIVES = [[0, 4, 7, 11], [1, 8], [2, 9], [3, 10], [0, 5, 7]]



@pytest.fixture(scope="module")
def uwe_dir(tmp_path_factory, tiny_backbone) -> str:
    torch.set_num_threads(1)  # tiny kernels: threads only add synchronisation on a busy CPU
    model = UWEModel.from_backbone(tiny_backbone, device="cpu", batch_size=4)
    out = tmp_path_factory.mktemp("models") / "uwe-tiny"
    save(
        model,
        out,
        extra_config={
            "train": {"loss": "many_to_many", "steps": 3, "lr": 8e-5},
            "step": 3,
            "seed": 0,
            "graphs": {"sj": {"weight": 1.0, "temperature": 0.05}},
            "data": {"root": "data/curated", "graph_edges": {"sj": 42}},
        },
    )
    return str(out)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    write_dataset(root, RankingDataset("job2skill", "heldout", "test", QUERIES, TARGETS, POSITIVES))
    return root


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """``run(*argv, stdin=None) -> (rc, stdout, stderr)`` with a fresh cache dir per test."""
    monkeypatch.setenv("UWE_CACHE_DIR", str(tmp_path / "cache"))

    def _run(*argv, stdin=None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    return _run


def rank_args(uwe_dir, root, *extra):
    return (
        "rank",
        "--model",
        uwe_dir,
        "--device",
        "cpu",
        "--task",
        "job2skill",
        "--root",
        root,
        *extra,
    )


def test_rank_table_matches_the_model(run, uwe_dir, root):
    rc, out, err = run(*rank_args(uwe_dir, root, "--top-k", "3", QUERIES[0], QUERIES[1]))
    assert rc == 0, err
    blocks = out.strip().split("\n\n")
    assert len(blocks) == 2
    model = load(uwe_dir, device="cpu")
    expected = model.rank(QUERIES[:2], model.index_targets(TARGETS), top_k=3)
    for block, query, top in zip(blocks, QUERIES[:2], expected, strict=True):
        lines = block.splitlines()
        assert lines[0] == f"query: {query}"
        assert lines[1].split() == ["rank", "score", "target"]
        rows = [line.split(maxsplit=2) for line in lines[2:]]
        assert [int(r[0]) for r in rows] == [1, 2, 3]
        assert [r[2] for r in rows] == [t for t, _ in top]
        assert [r[1] for r in rows] == [f"{s:.4f}" for _, s in top]  # 4 decimals


def test_rank_reads_stdin_json_and_csv(run, uwe_dir, root):
    rc, out, _ = run(
        *rank_args(uwe_dir, root, "--format", "json", "--top-k", "2"), stdin="baker\n\n  nurse \n"
    )
    assert rc == 0
    res = json.loads(out)
    assert [r["query"] for r in res] == ["baker", "nurse"]
    assert [x["rank"] for x in res[0]["results"]] == [1, 2]
    assert all(x["target"] in TARGETS for r in res for x in r["results"])
    rc, out, _ = run(
        *rank_args(uwe_dir, root, "--format", "csv", "--top-k", "2"), stdin="baker\nnurse\n"
    )
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rc == 0 and len(rows) == 4 and list(rows[0]) == ["query", "rank", "score", "target"]
    assert [(r["query"], r["target"]) for r in rows] == [
        (x["query"], y["target"]) for x in res for y in x["results"]
    ]


def test_second_call_hits_the_disk_cache(run, uwe_dir, root, monkeypatch, tmp_path):
    calls = []
    original = UWEModel.index_targets

    def counting(self, targets, batch_size=None):
        calls.append(len(targets))
        return original(self, targets, batch_size)

    monkeypatch.setattr(UWEModel, "index_targets", counting)
    rc1, out1, _ = run(*rank_args(uwe_dir, root, "--top-k", "4", "nurse"))
    cache = tmp_path / "cache" / "index"
    files = sorted(p.suffix for p in cache.rglob("*") if p.is_file() and p.parent.name != "targets")
    assert files == [".json", ".safetensors"]  # one index entry ...
    assert len(list((cache / "targets").glob("*.json"))) == 1  # ... and the task's target list
    rc2, out2, _ = run(*rank_args(uwe_dir, root, "--top-k", "4", "nurse"))
    assert rc1 == rc2 == 0 and calls == [len(TARGETS)]  # built once, then loaded
    assert out1 == out2  # the cached index is bit-exact
    run(*rank_args(uwe_dir, root, "--no-cache", "nurse"))
    assert len(calls) == 2


def test_index_command_then_rank_uses_it(run, uwe_dir, root, monkeypatch):
    rc, out, _ = run(
        "index", "--model", uwe_dir, "--device", "cpu", "--task", "job2skill", "--root", root
    )
    path = out.split(" (")[0]
    assert rc == 0 and path.endswith(".safetensors") and "miss" in out
    monkeypatch.setattr(UWEModel, "index_targets", lambda *a, **k: pytest.fail("rebuilt"))
    assert run(*rank_args(uwe_dir, root, "nurse"))[0] == 0


@pytest.mark.parametrize("kind", ["txt", "csv", "parquet"])
def test_targets_files(run, tmp_path, kind):
    path = tmp_path / f"t.{kind}"
    if kind == "txt":
        path.write_text("bake bread\n\n drive a truck \nbake bread\n", encoding="utf-8")
    else:  # csv: the 'target' column of two; parquet: the only column, whatever its name
        df = pd.DataFrame({"id": ["x", "y"], "target": ["bake bread", "drive a truck"]})
        if kind == "csv":
            df.to_csv(path, index=False)
        else:
            df[["target"]].rename(columns={"target": "label"}).to_parquet(path)
    rc, out, _ = run("rank", "--model", "bm25", "--targets", path, "--format", "json", "bread")
    assert rc == 0
    assert [r["target"] for r in json.loads(out)[0]["results"]] == ["bake bread", "drive a truck"]


def test_evaluate_matches_uwe_evaluation(run, uwe_dir, root, tmp_path):
    out_file = tmp_path / "res.json"
    rc, out, _ = run(
        "evaluate",
        "--model",
        uwe_dir,
        "--device",
        "cpu",
        "--task",
        "job2skill",
        "--root",
        root,
        "--out",
        out_file,
    )
    assert rc == 0
    ref = evaluate(
        load(uwe_dir, device="cpu"), "heldout", tasks=["job2skill"], root=root, progress=False
    )
    got = json.loads(out_file.read_text())
    for m in ("map", "rp@10"):
        assert got["tasks"]["job2skill"][m] == pytest.approx(
            ref["tasks"]["job2skill"][m], abs=1e-12
        )
    row = next(line for line in out.splitlines() if line.startswith("job2skill"))
    assert row.split()[-2:] == [
        f"{100 * ref['tasks']['job2skill'][k]:.2f}" for k in ("map", "rp@10")
    ]
    assert "macro (1 groups)" in out


def test_info(run, uwe_dir):
    rc, out, _ = run("info", uwe_dir)
    n_params = sum(p.numel() for p in load(uwe_dir, device="cpu").encoder.parameters())
    info = dict(line.split(":", 1) for line in out.splitlines())
    assert rc == 0 and info["scorer"].strip() == "sli" and info["max length"].strip() == "64 tokens"
    assert info["params"].strip().startswith(f"{n_params:,}")
    assert "many_to_many" in info["training"] and "sj 42" in info["training data"]
    rc, out, _ = run("info", uwe_dir, "--format", "json")
    assert json.loads(out)["params"] == n_params


@pytest.mark.parametrize(
    "case",
    [
        "unknown task",
        "missing model folder",
        "empty targets",
        "missing targets",
        "unknown model",
        "not a model folder",
        "no queries",
    ],
)
def test_errors_are_one_line_and_exit_2(run, uwe_dir, root, tmp_path, case):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    argv = {
        "unknown task": rank_args(uwe_dir, root, "x")[:5] + ("--task", "nope", "--root", root, "x"),
        "missing model folder": ("rank", "--model", tmp_path / "nowhere", "--targets", empty, "x"),
        "empty targets": ("rank", "--model", "bm25", "--targets", empty, "x"),
        "missing targets": ("rank", "--model", "bm25", "--targets", tmp_path / "no.txt", "x"),
        "unknown model": (
            "rank",
            "--model",
            "no-such-embedder-xyz",
            "--task",
            "job2skill",
            "--root",
            root,
            "x",
        ),
        "not a model folder": ("info", tmp_path),
        "no queries": rank_args(uwe_dir, root),
    }[case]
    if case == "missing model folder":
        empty.write_text("a\n", encoding="utf-8")
    rc, out, err = run(*argv, stdin="\n" if case == "no queries" else None)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("uwe: error: "), err


def test_verbose_shows_the_traceback(run, root):
    with pytest.raises(ValueError, match="unknown task"):
        run("--verbose", "rank", "--model", "bm25", "--task", "nope", "--root", root, "x")


def test_help_exits_0(run):
    rc, out, _ = run("rank", "--help")
    assert rc == 0 and "--top-k" in out and "stdin" in out
    assert np.all([c in run("--help")[1] for c in ("rank", "index", "evaluate", "info")])


def test_embedding_baseline_matrix_is_cached_and_lexical_is_not(run, tmp_path, monkeypatch):
    from uwe.model.baselines import BM25Baseline, EmbeddingBaseline

    calls = []
    for cls in (EmbeddingBaseline, BM25Baseline):
        original = cls.index_targets
        monkeypatch.setattr(
            cls,
            "index_targets",
            lambda self, t, _o=original: calls.append(self.name) or _o(self, t),
        )
    path = tmp_path / "t.txt"
    path.write_text("\n".join(TARGETS), encoding="utf-8")
    outs = [
        run("rank", "--model", m, "--device", "cpu", "--targets", path, "nurse")
        for m in ("all-MiniLM-L6-v2", "all-MiniLM-L6-v2", "bm25", "bm25")
    ]
    assert [rc for rc, _, _ in outs] == [0, 0, 0, 0] and outs[0][1] == outs[1][1]
    assert calls == ["all-MiniLM-L6-v2", "bm25", "bm25"]  # lexical: rebuilt every time
    assert len(list((tmp_path / "cache" / "index").rglob("*.safetensors"))) == 1


# -- the lean warm path ----------------------------------------------------------------------
HEAVY = ("torch", "transformers", "pandas", "pyarrow", "scipy", "sentence_transformers", "tqdm")


def test_numpy_engine_matches_the_torch_model(uwe_dir):
    from uwe.infer.index_arrays import index_arrays
    from uwe.infer.numpy_engine import NumpyIndex, NumpyUWE, unsupported_reason

    assert unsupported_reason(uwe_dir) is None
    model, engine = load(uwe_dir, device="cpu"), NumpyUWE(uwe_dir)
    texts = QUERIES + TARGETS + ["Ärztin  für\tAllgemeinmedizin", "x" * 3 + " word" * 100]
    hf = model.encoder.tokenizer(texts, truncation=True, max_length=64)["input_ids"]
    assert engine.token_ids(texts) == hf and max(len(x) for x in hf) == 64  # truncated alike
    with torch.inference_mode():
        ref = {
            int(i): e
            for b in model._encode_buckets(texts)
            for i, e in zip(b.index, b.emb, strict=True)
        }
    for pos, emb in engine.encode_buckets(texts):
        for i, e in zip(pos, emb, strict=True):
            np.testing.assert_allclose(e, ref[int(i)].numpy(), atol=2e-5)
    index = model.index_targets(TARGETS)
    np_index = NumpyIndex.from_arrays(index_arrays("uwe", index), len(TARGETS))
    got = engine.score_index(texts, np_index)
    np.testing.assert_allclose(got, model.score_index(texts, index), atol=1e-5)
    assert got.dtype == np.float32 and got.shape == (len(texts), len(TARGETS))


def test_engines_agree_and_the_torch_path_reads_the_cache_bit_exact(run, uwe_dir, root):
    outs = {}
    for engine in ("torch", "torch", "numpy", "numpy"):  # miss then hit, per engine
        rc, out, err = run(
            *rank_args(uwe_dir, root, "--engine", engine, "--format", "json", *QUERIES)
        )
        assert rc == 0, err
        outs.setdefault(engine, []).append(json.loads(out))
    assert outs["torch"][0] == outs["torch"][1] and outs["numpy"][0] == outs["numpy"][1]
    for t, n in zip(outs["torch"][0], outs["numpy"][0], strict=True):
        assert [x["target"] for x in t["results"]] == [x["target"] for x in n["results"]]
        assert [x["score"] for x in t["results"]] == pytest.approx(
            [x["score"] for x in n["results"]], abs=1e-5
        )


def test_warm_rank_imports_neither_torch_nor_pandas(run, uwe_dir, root):
    import subprocess
    import sys

    argv = rank_args(uwe_dir, root, "--top-k", "5", "nurse", "baker")
    rc, cold, _ = run(*argv)  # builds the index and the target list in UWE_CACHE_DIR
    code = (
        "import sys\n"
        "from uwe.cli import main\n"
        f"rc = main({[str(a) for a in argv]!r})\n"
        "sys.stdout.flush()\n"
        f"heavy = sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert rc == 0 and proc.returncode == 0, proc.stderr
    assert "HEAVY [] 0" in proc.stderr, proc.stderr
    assert proc.stdout == cold


def test_the_target_list_cache_follows_the_task_files(run, uwe_dir, tmp_path, monkeypatch):
    from uwe.data import tasks

    root = tmp_path / "curated"
    ds = RankingDataset("job2skill", "heldout", "test", QUERIES, TARGETS, POSITIVES)
    write_dataset(root, ds)
    argv = rank_args(uwe_dir, root, "--format", "json", "--top-k", "20", "nurse")
    first = json.loads(run(*argv)[1])[0]["results"]
    lists = tmp_path / "cache" / "index" / "targets"
    assert len(list(lists.glob("*.json"))) == 1
    real_load = tasks.load_task
    monkeypatch.setattr(tasks, "load_task", lambda *a, **k: pytest.fail("parquet read again"))
    assert json.loads(run(*argv)[1])[0]["results"] == first  # from the cached list
    monkeypatch.setattr(tasks, "load_task", real_load)
    write_dataset(
        root,
        RankingDataset(
            "job2skill",
            "heldout",
            "test",
            QUERIES,
            [*TARGETS, "nursing care"],
            [*POSITIVES[:3], [3, 12], POSITIVES[4]],
        ),
    )
    rc, out, _ = run(*argv)
    assert rc == 0 and "nursing care" in {x["target"] for x in json.loads(out)[0]["results"]}
    assert len(list(lists.glob("*.json"))) == 2
    for path in lists.glob("*.json"):  # a damaged list is a miss, read again and rewritten
        path.write_text("{not json", encoding="utf-8")
    rc, out2, _ = run(*argv)
    assert rc == 0 and out2 == out
    assert sum(p.read_text().startswith("{\n") for p in lists.glob("*.json")) == 1


def test_a_changed_model_or_old_entry_is_rebuilt(run, uwe_dir, root, tmp_path, monkeypatch):
    import os
    import shutil

    calls = []
    original = UWEModel.index_targets
    monkeypatch.setattr(
        UWEModel, "index_targets", lambda self, t, b=None: calls.append(1) or original(self, t, b)
    )
    model = tmp_path / "uwe-copy"
    shutil.copytree(uwe_dir, model)
    argv = rank_args(model, root, "--format", "json", "nurse")
    out = run(*argv)[1]
    run(*argv)
    assert len(calls) == 1
    weights = model / "model.safetensors"  # retrained in place: new mtime
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    assert run(*argv)[1] == out and len(calls) == 2
    cfg = json.loads((model / "uwe_config.json").read_text())
    (model / "uwe_config.json").write_text(json.dumps({**cfg, "attention_temperature": 0.5}))
    assert run(*argv)[1] != out and len(calls) == 3  # another temperature, other scores
    run(*argv)
    assert len(calls) == 3
    for meta in (tmp_path / "cache" / "index").glob("uwe-copy-*/*.json"):  # an older format
        version = f'"format_version": {FORMAT_VERSION}'
        meta.write_text(meta.read_text().replace(version, '"format_version": 1'))
    run(*argv)
    assert len(calls) == 4


def test_index_hit_does_not_load_the_model(run, uwe_dir, root, monkeypatch):
    argv = ("index", "--model", uwe_dir, "--device", "cpu", "--task", "job2skill", "--root", root)
    rc, out, _ = run(*argv)
    assert rc == 0 and out.strip().endswith("miss)")
    from uwe.infer import loader

    monkeypatch.setattr(loader, "load_model", lambda *a, **k: pytest.fail("model loaded"))
    rc, out2, _ = run(*argv)
    assert rc == 0 and out2.split(" (")[0] == out.split(" (")[0] and out2.strip().endswith("hit)")


def test_engine_choice(run, uwe_dir, root, tmp_path):
    import shutil

    from uwe.infer.numpy_engine import unsupported_reason

    maxsim = tmp_path / "uwe-maxsim"
    shutil.copytree(uwe_dir, maxsim)
    cfg = json.loads((maxsim / "uwe_config.json").read_text())
    (maxsim / "uwe_config.json").write_text(json.dumps({**cfg, "scorer": "maxsim"}))
    assert "scorer" in unsupported_reason(maxsim)
    for argv in (
        rank_args(maxsim, root, "--engine", "numpy", "nurse"),
        (
            "rank",
            "--model",
            "bm25",
            "--engine",
            "numpy",
            "--task",
            "job2skill",
            "--root",
            root,
            "x",
        ),
        rank_args(uwe_dir, root, "--engine", "numpy", "nurse")[:4]
        + ("cuda",)
        + rank_args(uwe_dir, root, "--engine", "numpy", "nurse")[5:],
    ):
        rc, out, err = run(*argv)
        assert rc == 2 and out == "" and err.startswith("uwe: error: --engine numpy"), err
    rc, out, _ = run(*rank_args(maxsim, root, "--top-k", "3", "nurse"))  # auto -> torch
    model = load(str(maxsim), device="cpu")
    expected = model.rank(["nurse"], model.index_targets(TARGETS), top_k=3)[0]
    assert rc == 0 and [line.split(maxsplit=2)[2] for line in out.splitlines()[2:]] == [
        t for t, _ in expected
    ]


def test_cli_copies_stay_in_sync():
    from uwe.data import tasks
    from uwe.infer import ranker

    assert ranker.TASK_FAMILIES == tasks.FAMILIES and ranker.TASK_SPLITS == tasks.SPLITS


def test_threads(monkeypatch):
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    for load_avg, expected in ((0.2, 4), (1.6, 2), (3.9, 1), (9.0, 1)):
        monkeypatch.setattr(runtime.os, "getloadavg", lambda v=load_avg: (v, v, v))
        assert runtime.default_threads() == expected
    parser = cli.build_parser()
    monkeypatch.setenv("UWE_THREADS", "3")
    args = parser.parse_args(["rank", "--model", "bm25", "--targets", "t.txt", "x"])
    runtime.configure_threads(args)
    assert args.threads == 3
    args = parser.parse_args(["--threads", "2", "info", "m"])
    runtime.configure_threads(args)
    assert args.threads == 2
    monkeypatch.delenv("UWE_THREADS")
    args = parser.parse_args(["info", "m"])
    runtime.configure_threads(args)
    assert args.threads == 1  # load 9 on 4 CPUs


# -- the library API behind the commands (uwe.infer.ranker) ------------------------------------
def _cli_json(run, *argv):
    rc, out, err = run(*argv, "--format", "json")
    assert rc == 0, err
    return [[(x["target"], x["score"]) for x in r["results"]] for r in json.loads(out)]


def _api_rows(ranking):
    return [[(t, round(s, 6)) for t, s in ranking.top(i)] for i in range(len(ranking.queries))]


def test_the_ranker_api_ranks_a_targets_file_as_the_cli_does(run, tmp_path):
    from uwe.infer.index_cache import targets_sha256
    from uwe.infer.ranker import Ranker, RankerOptions, TargetSource

    path = tmp_path / "skills.txt"
    path.write_text("\n".join(TARGETS) + "\n", encoding="utf-8")
    queries = ["bread", "drive a truck", "first aid for patients", "zzzz"]
    cli_rows = _cli_json(run, "rank", "--model", "bm25", "--targets", path, "--top-k", "3",
                         *queries)
    ranker = Ranker(RankerOptions(model="bm25", cache_dir=tmp_path / "api-cache"))
    ranking = ranker.rank(queries, TargetSource(file=path), top_k=3)
    assert ranking.queries == queries and ranking.targets == TARGETS
    assert _api_rows(ranking) == cli_rows
    assert [len(ids) for ids, _ in ranking.results] == [3] * len(queries)
    assert [t for t, _ in ranking.top(0)][0] == "bake bread"
    assert [t for t, _ in ranking.top(1)][0] == "drive a truck"
    assert len(ranking.warnings) == 1 and ranking.warnings[0].startswith("query 4 ('zzzz')")
    same = ranker.rank(queries, list(TARGETS), top_k=3)  # a list of texts is a source too
    assert _api_rows(same) == cli_rows
    assert ranker.targets(TargetSource(file=path)) == (TARGETS, targets_sha256(TARGETS))
    assert len(ranker.rank(["x"], TargetSource(file=path), top_k=100).top(0)) == len(TARGETS)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_the_ranker_api_ranks_a_task_as_the_cli_does(run, uwe_dir, root, tmp_path, engine):
    from uwe.infer.ranker import Ranker, RankerOptions, TargetSource

    cli_rows = _cli_json(run, *rank_args(uwe_dir, root, "--engine", engine, "--top-k", "4",
                                         *QUERIES))
    options = RankerOptions(model=uwe_dir, root=root, device="cpu", engine=engine,
                            cache_dir=tmp_path / "api-cache")
    ranking = Ranker(options).rank(QUERIES, TargetSource(task="job2skill"), top_k=4)
    assert _api_rows(ranking) == cli_rows and ranking.warnings == []


def test_a_target_source_is_a_task_or_a_file(root):
    from uwe.errors import CLIError, InputError
    from uwe.infer.ranker import TargetSource

    with pytest.raises(CLIError, match=r"a curated task or a targets file, not both") as both:
        TargetSource(task="job2skill", file="skills.txt")
    with pytest.raises(CLIError, match=r"needs a curated task \(task=") as neither:
        TargetSource()
    assert "\n" not in str(both.value) + str(neither.value)
    with pytest.raises(InputError, match=r"unknown --family 'heldot' \(did you mean 'heldout'"):
        TargetSource(task="job2skill", family="heldot")
    assert TargetSource(file="skills.txt", family="heldot").file == "skills.txt"  # not a task


def test_ranker_options_are_checked(tmp_path):
    from uwe.errors import InputError
    from uwe.infer.ranker import Ranker, RankerOptions, TargetSource

    with pytest.raises(InputError, match=r"unknown engine 'nunpy' \(did you mean 'numpy'"):
        RankerOptions(model="bm25", engine="nunpy")
    with pytest.raises(InputError, match=r"batch_size must be a whole number >= 1, got 0"):
        RankerOptions(model="bm25", batch_size=0)
    with pytest.raises(InputError, match=r"unknown target layout"):
        RankerOptions(model="bm25", target_layout="bf16")
    ranker = Ranker(RankerOptions(model="bm25", cache_dir=tmp_path))
    path = tmp_path / "t.txt"
    path.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"top_k must be >= 1, got 0"):
        ranker.rank(["a"], TargetSource(file=path), top_k=0)
    with pytest.raises(InputError, match=r"a list of query texts, not one string"):
        ranker.rank("a", TargetSource(file=path))


def test_the_ranker_api_indexes_and_evaluates(uwe_dir, root, tmp_path, monkeypatch):
    from uwe.infer import loader
    from uwe.infer.index_cache import CachedIndexModel
    from uwe.infer.ranker import Ranker, RankerOptions, TargetSource

    calls = []
    real_load = loader.load_model
    monkeypatch.setattr(loader, "load_model", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    options = RankerOptions(model=uwe_dir, root=root, device="cpu", cache_dir=tmp_path / "c")
    ranker = Ranker(options)
    first = ranker.index(TargetSource(task="job2skill"))
    assert first.status == "miss" and first.path.is_file() and first.n_targets == len(TARGETS)
    assert ranker.model() is ranker.model() and len(calls) == 1  # loaded once
    again = Ranker(options).index(TargetSource(task="job2skill"))
    assert (again.path, again.status) == (first.path, "hit") and len(calls) == 1  # not loaded
    scored = ranker.scoring_model()
    assert isinstance(scored, CachedIndexModel) and scored.model is ranker.model()
    uncached = Ranker(RankerOptions(model=uwe_dir, device="cpu", use_cache=False))
    assert not isinstance(uncached.scoring_model(), CachedIndexModel)
    assert ranker.check_tasks("all") is None
    assert ranker.check_tasks(" job2skill, ") == ["job2skill"]
    with pytest.raises(ValueError, match=r"unknown task 'job2skil'"):
        ranker.check_tasks("job2skill,job2skil")
    res = evaluate(scored, "heldout", tasks=["job2skill"], root=root, progress=False)
    ref = evaluate(load(uwe_dir, device="cpu"), "heldout", tasks=["job2skill"], root=root,
                   progress=False)
    assert res["tasks"]["job2skill"]["map"] == pytest.approx(ref["tasks"]["job2skill"]["map"],
                                                             abs=1e-12)
