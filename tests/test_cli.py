"""uwe.cli in-process on a tiny curated folder and a tiny random-BERT UWE model."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pandas as pd
import pytest
import torch

from uwe import cli
from uwe.curation import write_dataset
from uwe.evaluation import evaluate
from uwe.model import UWEModel, load, save
from uwe.tasks import RankingDataset

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


def make_tiny_backbone(folder) -> str:
    """A 1-layer, 32-d random BERT with the all-MiniLM-L6-v2 tokenizer (as tests/test_model)."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    from uwe.encoders import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2"))
    torch.manual_seed(0)
    cfg = BertConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=len(tok),
        max_position_embeddings=128,
    )
    BertModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def uwe_dir(tmp_path_factory) -> str:
    torch.set_num_threads(1)  # tiny kernels: threads only add synchronisation on a busy CPU
    backbone = make_tiny_backbone(tmp_path_factory.mktemp("bert"))
    model = UWEModel.from_backbone(backbone, device="cpu", batch_size=4)
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
    files = sorted(p.suffix for p in (tmp_path / "cache" / "index").rglob("*") if p.is_file())
    assert files == [".json", ".safetensors"]
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
    else:  # csv: the 'target' column; parquet: no 'target' column -> the first one
        col = "target" if kind == "csv" else "label"
        df = pd.DataFrame({"id": ["x", "y"], col: ["bake bread", "drive a truck"]})
        df = df[[col, "id"]] if kind == "parquet" else df
        df.to_csv(path, index=False) if kind == "csv" else df.to_parquet(path)
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
    from uwe.baselines import BM25Baseline, EmbeddingBaseline

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
