"""Bad input, case by case: every one gives the right result or one clear line on stderr and
exit status 2, never a traceback or a silently wrong answer (docs/using-uwe.md, "When something
is wrong"). The table holds the command-line cases; the cases that need several steps follow it."""

from __future__ import annotations

import io
import json
import os
import re
import runpy
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from uwe import cli
from uwe.data.curation import write_dataset
from uwe.data.dataset import RankingDataset
from uwe.model.uwe_model import UWEModel, save

QUERIES = ["data scientist", "baker", "truck driver", "nurse", "software developer"]
TARGETS = ["python programming", "bake bread", "drive a truck", "care for patients",
           "statistics", "manage a team", "use spreadsheets", "sql", "knead dough",
           "logistics", "first aid", "machine learning"]
POSITIVES = [[0, 4, 7, 11], [1, 8], [2, 9], [3, 10], [0, 5, 7]]


@pytest.fixture(scope="module")
def uwe_dir(tiny_backbone, tmp_path_factory) -> Path:
    """A tiny SLI UWE folder (the NumPy engine runs it on the CPU)."""
    torch.set_num_threads(1)
    model = UWEModel.from_backbone(tiny_backbone, device="cpu", batch_size=4)
    return save(model, tmp_path_factory.mktemp("models") / "uwe-tiny")


@pytest.fixture
def model_copy(uwe_dir, tmp_path) -> Path:
    """A copy of the tiny model that a case may damage."""
    return Path(shutil.copytree(uwe_dir, tmp_path / "uwe-copy"))


def write_task(root: Path, queries=QUERIES, positives=POSITIVES, name="job2skill") -> Path:
    write_dataset(root, RankingDataset(name, "heldout", "test", list(queries), TARGETS,
                                       [list(p) for p in positives]))
    return root


@pytest.fixture
def root(tmp_path) -> Path:
    return write_task(tmp_path / "curated")


@pytest.fixture
def run(monkeypatch, tmp_path, capsys):
    """``run(*argv, stdin=None) -> (rc, stdout, stderr)`` with a fresh cache dir per test.
    transformers is already imported here, so the progress bars that ``uwe`` turns off at
    its start (HF_HUB_DISABLE_PROGRESS_BARS) are turned off by hand."""
    from transformers.utils import logging as hf_logging

    monkeypatch.setenv("UWE_CACHE_DIR", str(tmp_path / "cache"))
    hf_logging.disable_progress_bar()

    def _run(*argv, stdin=None):
        if stdin is not None:
            monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    yield _run
    hf_logging.enable_progress_bar()


def one_line_error(rc: int, out: str, err: str, pattern: str) -> None:
    assert rc == 2, (rc, out, err)
    assert out == "", out
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uwe: error: "), err
    assert re.search(pattern, lines[0]), (pattern, lines[0])


def task_file(root: Path, name: str = "queries.parquet") -> Path:
    return root / "tasks" / "heldout" / "job2skill" / "test" / name


# -- each case: set-up(tmp_path, root, model) -> argv, and the pattern of its one error line --
def _no_tokenizer(tmp, root, model):
    (model / "tokenizer.json").unlink()
    return ("rank", "--model", model, "--task", "job2skill", "--root", root, "nurse")


def _small_tokenizer(engine):
    def setup(tmp, root, model):
        data = json.loads((model / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = data["model"]["vocab"]
        data["model"]["vocab"] = dict(list(vocab.items())[:200])
        data["added_tokens"] = [t for t in data["added_tokens"] if t["id"] < 200]
        (model / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
        return ("rank", "--model", model, "--engine", engine, "--task", "job2skill",
                "--root", root, "nurse")
    return setup


def _no_positives(tmp, root, model):
    write_task(root, positives=[[] for _ in QUERIES])
    return ("evaluate", "--model", "bm25", "--task", "job2skill", "--root", root)


def _no_query_rows(tmp, root, model):
    df = pd.read_parquet(task_file(root))
    df.iloc[:0].to_parquet(task_file(root))
    return ("evaluate", "--model", "bm25", "--task", "all", "--root", root)


def _targets_csv_without_target(tmp, root, model):
    path = tmp / "skills.csv"
    path.write_text("id,name,kind\n1,python,skill\n2,sql,skill\n", encoding="utf-8")
    return ("rank", "--model", "bm25", "--targets", path, "python")


def _table(name: str, text: str):
    def setup(tmp, root, model):
        (tmp / name).write_text(text, encoding="utf-8")
        return ("rank", "--model", "bm25", "--targets", tmp / name, "python")
    return setup


TABLES = {  # name, text -> targets, or the error's pattern
    "one column, no header: the first row is a target": (
        "skills.csv", "python\nsql\nexcel\n", ["python", "sql", "excel"]),
    "header naming target, a quoted comma": (
        "skills.csv", 'id,target\n1,"manage, lead"\n2,sql\n', ["manage, lead", "sql"]),
    "tsv, commas inside targets": (
        "skills.tsv", "target\tid\nmanage, lead\t1\nsql\t2\n", ["manage, lead", "sql"]),
    "unquoted comma": ("skills.csv", "python\nmanage, lead\nsql\n",
                       r"row 2 has 2 fields, row 1 has 1 \(an unquoted ','"),
    "stray tab": ("skills.tsv", "python\nmanage\tlead\n",
                  r"row 2 has 2 fields, row 1 has 1 \(a stray tab"),
    "semicolon-separated csv with a header": ("skills.csv", "target;id\npython;1\nsql;2\n",
                                              r"looks semicolon-separated"),
    "semicolon-separated csv without a header": ("skills.csv", "python;1\nsql;2\n",
                                                 r"looks semicolon-separated"),
    "tab-separated csv": ("skills.csv", "target\tid\npython\t1\n", r"looks tab-separated"),
    "an unterminated quote": ("skills.csv", 'python\n"sql\n', r"row \d+: unexpected end"),
}


@pytest.mark.parametrize("case", list(TABLES))
def test_a_targets_table_is_read_by_its_extensions_rule(case, tmp_path):
    from uwe.errors import CLIError
    from uwe.infer.ranker import read_targets_file

    name, text, want = TABLES[case]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    if isinstance(want, list):
        assert read_targets_file(path) == want
    else:
        with pytest.raises(CLIError, match=want) as err:
            read_targets_file(path)
        assert "\n" not in str(err.value)


def _truncated_task(tmp, root, model):
    path = task_file(root)
    path.write_bytes(path.read_bytes()[:100])
    return ("evaluate", "--model", "bm25", "--task", "job2skill", "--root", root)


def _not_parquet_task(tmp, root, model):
    task_file(root, "targets.parquet").write_text("target\npython\n", encoding="utf-8")
    return ("rank", "--model", "bm25", "--task", "job2skill", "--root", root, "nurse")


def _info_json_list(tmp, root, model):
    (model / "uwe_config.json").write_text("[1, 2]\n", encoding="utf-8")
    return ("info", model)


def _truncate_weights(model: Path) -> None:
    w = model / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])


def _info_truncated_weights(tmp, root, model):
    _truncate_weights(model)
    return ("info", model)


def _rank_truncated_weights(tmp, root, model):
    _truncate_weights(model)
    return ("rank", "--model", model, "--task", "job2skill", "--root", root, "nurse")


def _binary_targets(tmp, root, model):
    path = tmp / "skills.txt"
    path.write_bytes(b"python\n\x00\x01\x02sql\n")
    return ("rank", "--model", "bm25", "--targets", path, "python")


def _latin1_targets(tmp, root, model):
    path = tmp / "skills.txt"
    path.write_bytes("python\ncaf\u00e9 service\n".encode("latin-1"))
    return ("rank", "--model", "bm25", "--targets", path, "python")


def _utf16_without_bom(tmp, root, model):
    path = tmp / "skills.txt"
    path.write_bytes("python\nsql\n".encode("utf-16-le"))
    return ("rank", "--model", "bm25", "--targets", path, "python")


def _argv(*argv):
    return lambda tmp, root, model: argv


def _weights(kind: str, engine: str):
    """A folder whose weights lack a tensor, have one more, or disagree with config.json: each
    engine refuses it in one line (libraries fill a missing tensor randomly)."""
    def setup(tmp, root, model):
        from safetensors.torch import load_file, save_file

        path = model / "model.safetensors"
        tensors = load_file(path)
        if kind == "missing":
            del tensors["encoder.layer.0.attention.self.query.weight"]
        elif kind == "unexpected":
            tensors["extra.weight"] = torch.zeros(2)
        else:  # config.json describes another backbone
            cfg = json.loads((model / "config.json").read_text(encoding="utf-8"))
            cfg["intermediate_size"] = 2 * cfg["intermediate_size"]
            (model / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
        save_file(tensors, path, metadata={"format": "pt"})
        return ("rank", "--model", model, "--engine", engine, "--task", "job2skill", "--root",
                root, "nurse")
    return setup


WEIGHT_ERRORS = {
    "missing": r"model\.safetensors: tensor 'encoder\.layer\.0\.attention\.self\.query\.weight' "
               r"is missing",
    "unexpected": r"model\.safetensors: unexpected tensor 'extra\.weight'",
    "config": r"config\.json: disagrees with model\.safetensors: tensor "
              r"'encoder\.layer\.0\.intermediate\.dense\.(weight|bias)' has shape",
}


def _config_value(key: str, value, engine: str):
    """uwe_config.json with a value no engine can run: the same one line from every engine."""
    def setup(tmp, root, model):
        path = model / "uwe_config.json"
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg[key] = value
        path.write_text(json.dumps(cfg), encoding="utf-8")
        return ("rank", "--model", model, "--engine", engine, "--task", "job2skill", "--root",
                root, "nurse")
    return setup


CONFIG_VALUES = [("attention_temperature", -1.0, r"a finite number > 0"),
                 ("attention_temperature", float("nan"), r"a finite number > 0"),
                 ("attention_temperature", "0.1", r"a finite number > 0"),
                 ("attention_temperature", None, r"a finite number > 0"),
                 ("max_length", 0, r"an integer from 2 to 128"),
                 ("max_length", 1000, r"an integer from 2 to 128, the backbone's positions"),
                 ("scorer", "sli2", r"one of sli, mean"),
                 ("pooler", "yes", r"true or false")]


CASES = {
    "model folder without tokenizer.json": (_no_tokenizer, r"missing tokenizer\.json or vocab"),
    "tokenizer of another model (numpy)": (_small_tokenizer("numpy"),
                                           r"tokenizer has 200 tokens for a backbone of 30522"),
    "tokenizer of another model (torch)": (_small_tokenizer("torch"),
                                           r"tokenizer has 200 tokens for a backbone of 30522"),
    "task whose queries all lack positives": (_no_positives,
                                              r"queries\.parquet: none of its 5 queries has a "
                                              r"positive target"),
    "task with 0 query rows": (_no_query_rows, r"queries\.parquet: no query rows"),
    "csv targets, several columns, none 'target'": (
        _targets_csv_without_target, r"skills\.csv has 3 columns and no header row naming a "
                                     r"'target' column"),
    "csv targets, an unquoted comma in a row": (
        _table("skills.csv", "python\nmanage, lead\nsql\n"),
        r"skills\.csv: row 2 has 2 fields, row 1 has 1 \(an unquoted ',' inside a target\?"),
    "evaluate --task ''": (lambda t, r, m: ("evaluate", "--model", "bm25", "--task", "",
                                            "--root", r), r"--task '' names no task"),
    "rank --task ''": (lambda t, r, m: ("rank", "--model", "bm25", "--task", "", "--root", r,
                                        "x"), r"--task is empty: give a task name"),
    "evaluate --task ','": (lambda t, r, m: ("evaluate", "--model", "bm25", "--task", ",",
                                             "--root", r), r"names no task"),
    "truncated task file": (_truncated_task, r"queries\.parquet: not a readable parquet file"
                                             r".*dvc repro curate"),
    "task file that is not parquet": (_not_parquet_task, r"targets\.parquet: not a readable "
                                                         r"parquet file.*dvc repro curate"),
    "info on a config that is a JSON list": (_info_json_list,
                                             r"uwe_config\.json: expected a JSON object, got "
                                             r"a JSON list"),
    "info on truncated weights": (_info_truncated_weights,
                                  r"model\.safetensors: not a readable safetensors file"),
    "rank with truncated weights": (_rank_truncated_weights,
                                    r"model\.safetensors: the weights do not load"),
    "--device of another kind": (lambda t, r, m: ("rank", "--model", "bm25", "--device", "gpu",
                                                  "--task", "job2skill", "--root", r, "x"),
                                 r"unknown --device 'gpu'.*known: auto, cpu, cuda"),
    "--threads 0": (_argv("--threads", "0", "info", "x"), r"--threads: must be >= 1, got 0"),
    "--threads -2": (_argv("--threads", "-2", "info", "x"), r"--threads: must be >= 1, got -2"),
    "--threads two": (_argv("--threads", "two", "info", "x"),
                      r"--threads: expected a whole number >= 1, got 'two'"),
    "--top-k 0": (lambda t, r, m: ("rank", "--model", "bm25", "--top-k", "0", "--task",
                                   "job2skill", "--root", r, "x"), r"--top-k: must be >= 1"),
    "unknown model name": (lambda t, r, m: ("rank", "--model", "bm25x", "--task", "job2skill",
                                            "--root", r, "x"),
                           r"unknown model: 'bm25x' \(did you mean 'bm25'\?\)"),
    "missing model folder": (lambda t, r, m: ("rank", "--model", t / "models" / "nowhere",
                                              "--task", "job2skill", "--root", r, "x"),
                             r"model folder .*not found"),
    "binary targets file": (_binary_targets, r"skills\.txt looks binary"),
    "utf-16 targets file without a BOM": (_utf16_without_bom,
                                          r"skills\.txt looks binary .*UTF-16 without a "
                                          r"byte-order mark\?"),
    "latin-1 targets file": (_latin1_targets,
                             r"skills\.txt is not UTF-8 text \(byte 0xe9 at offset 10\)"),
    "--cache-dir ''": (lambda t, r, m: ("rank", "--model", "bm25", "--cache-dir", "", "--task",
                                        "job2skill", "--root", r, "x"),
                       r"--cache-dir: empty path"),
    "a query that is not UTF-8 (argv)": (
        lambda t, r, m: ("rank", "--model", m, "--task", "job2skill", "--root", r,
                         "caf\udce9"),
        r"query 1 is not UTF-8 text \(byte 0xe9 at character 3\)"),
    "unknown --family": (lambda t, r, m: ("rank", "--model", "bm25", "--family", "heldot",
                                          "--task", "job2skill", "--root", r, "x"),
                         r"unknown --family 'heldot' \(did you mean 'heldout'\?\)"),
    "unknown --split": (lambda t, r, m: ("evaluate", "--model", "bm25", "--split", "tst",
                                         "--task", "all", "--root", r),
                        r"unknown --split 'tst' \(did you mean 'test'\?\)"),
    "unknown task": (lambda t, r, m: ("rank", "--model", "bm25", "--task", "job2skil",
                                      "--root", r, "x"),
                     r"unknown task 'job2skil' \(did you mean 'job2skill'\?\)"),
    "no curated tasks": (lambda t, r, m: ("rank", "--model", "bm25", "--task", "job2skill",
                                          "--root", t / "empty", "x"),
                         r"no curated heldout tasks .* run `dvc repro curate`, or pass --root"),
}
for _engine in ("torch", "numpy", "onnx"):
    for _kind, _pattern in WEIGHT_ERRORS.items():
        CASES[f"weights: {_kind} tensor ({_engine})"] = (_weights(_kind, _engine), _pattern)
    for _key, _value, _want in CONFIG_VALUES:
        CASES[f"uwe_config {_key} {_value!r} ({_engine})"] = (
            _config_value(_key, _value, _engine),
            rf"uwe_config\.json: bad '{_key}' .*\({_want}")


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case, run, tmp_path, root, model_copy, monkeypatch):
    import sentence_transformers

    def no_hub(*args, **kwargs):  # an unknown name must fail before any loading is tried
        pytest.fail("SentenceTransformer was constructed")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", no_hub)
    setup, pattern = CASES[case]
    argv = setup(tmp_path, root, model_copy)
    one_line_error(*run(*argv), pattern)


def test_uwe_threads_env_is_checked(run, monkeypatch):
    monkeypatch.setenv("UWE_THREADS", "abc")
    one_line_error(*run("info", "x"), r"UWE_THREADS must be a whole number >= 1, got 'abc'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_device_cuda_without_a_gpu(run, root):
    one_line_error(*run("rank", "--model", "bm25", "--device", "cuda", "--task", "job2skill",
                        "--root", root, "x"), r"--device cuda: this torch .* sees 0 GPUs; use "
                                              r"--device cpu or auto")


def test_non_finite_scores_are_never_ranked(run, root, monkeypatch):
    import numpy as np

    from uwe.model.baselines import BM25Baseline

    def nan_scores(self, queries, index):
        out = np.zeros((len(queries), len(TARGETS)), dtype=np.float32)
        out[0, 3] = np.nan
        return out

    monkeypatch.setattr(BM25Baseline, "score_index", nan_scores)
    one_line_error(*run("rank", "--model", "bm25", "--task", "job2skill", "--root", root, "a"),
                   r"score of query 'a' against target 3 is nan")


# -- right results ---------------------------------------------------------------------------
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_targets_text_with_a_byte_order_mark(run, tmp_path, encoding):
    path = tmp_path / "skills.txt"
    text = "python\nsql\nbake bread\n"
    data = (b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom"
            else text.encode(encoding))
    path.write_bytes(data)
    rc, out, err = run("rank", "--model", "bm25", "--targets", path, "--format", "json",
                       "--top-k", "3", "python")
    assert rc == 0, err
    assert sorted(r["target"] for r in json.loads(out)[0]["results"]) == [
        "bake bread", "python", "sql"]
    assert json.loads(out)[0]["results"][0]["target"] == "python"


def test_targets_csv_with_a_byte_order_mark(run, tmp_path):
    path = tmp_path / "skills.csv"
    path.write_bytes("target,id\npython,1\nsql,2\n".encode("utf-8-sig"))
    rc, out, err = run("rank", "--model", "bm25", "--targets", path, "--format", "json", "sql")
    assert rc == 0, err
    assert [r["target"] for r in json.loads(out)[0]["results"]] == ["sql", "python"]


def _damage_data(path: Path) -> None:
    """Overwrite bytes in the middle of a safetensors file's data, its header left intact."""
    data = bytearray(path.read_bytes())
    start = 8 + int.from_bytes(data[:8], "little")
    mid = start + (len(data) - start) // 2
    data[mid : mid + 64] = bytes(range(64))
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_damaged_index_cache_is_rebuilt_not_used(run, uwe_dir, root, tmp_path, engine):
    argv = ("rank", "--model", uwe_dir, "--engine", engine, "--task", "job2skill",
            "--root", root, "--format", "json", "--top-k", "12", *QUERIES)
    rc, fresh, err = run(*argv)
    assert rc == 0, err
    entries = [p for p in (tmp_path / "cache" / "index").rglob("*.safetensors")]
    assert len(entries) == 1
    assert run(*argv)[1] == fresh  # a clean hit: checked once, then remembered
    assert entries[0].with_suffix(".verified.json").is_file()
    _damage_data(entries[0])
    rc, again, err = run(*argv)
    assert rc == 0 and again == fresh  # the same ranking as from a fresh index
    assert "is damaged" in err and str(entries[0]) in err
    rc, third, err = run(*argv)  # rebuilt and stored again: a clean hit, no warning
    assert rc == 0 and third == fresh and "damaged" not in err


def test_damaged_index_cache_does_not_change_evaluate(run, uwe_dir, root, tmp_path):
    argv = ("evaluate", "--model", uwe_dir, "--device", "cpu", "--task", "job2skill",
            "--root", root, "--out")
    assert run(*argv, tmp_path / "a.json")[0] == 0
    entry = next((tmp_path / "cache" / "index").rglob("*.safetensors"))
    _damage_data(entry)
    rc, _, err = run(*argv, tmp_path / "b.json")
    assert rc == 0 and "is damaged" in err
    a, b = (json.loads((tmp_path / f"{n}.json").read_text())["tasks"] for n in "ab")
    assert a["job2skill"]["map"] == b["job2skill"]["map"]


def test_a_failing_evaluate_leaves_its_out_file(run, root, tmp_path):
    out = tmp_path / "res.json"
    out.write_text('{"kept": true}\n', encoding="utf-8")
    write_task(root, positives=[[] for _ in QUERIES])
    rc, _, _ = run("evaluate", "--model", "bm25", "--task", "all", "--root", root, "--out", out)
    assert rc == 2 and json.loads(out.read_text()) == {"kept": True}


def test_saved_model_files_have_the_default_mode(uwe_dir):
    mask = os.umask(0o022)
    os.umask(mask)
    modes = {str(p.relative_to(uwe_dir)): p.stat().st_mode & 0o777
             for p in Path(uwe_dir).rglob("*") if p.is_file()}
    assert modes["model.safetensors"] == 0o666 & ~mask
    assert set(modes.values()) == {0o666 & ~mask}


def run_train_script(root: Path, monkeypatch, train) -> int:
    """Exit status of ``scripts/train.py --root root --profile smoke`` with ``uwe.train.loop.train``
    replaced by ``train`` (and no thread / logging set-up)."""
    from uwe import runtime
    from uwe.config import load_params
    from uwe.train import loop as training

    repo = Path(__file__).resolve().parents[1]
    shutil.copy(repo / "params.yaml", root / "params.yaml")
    monkeypatch.setattr(runtime, "setup", lambda r, params, profile: (
        Path(r), load_params(Path(r) / params, profile=profile)))
    monkeypatch.setattr(training, "train", train)
    monkeypatch.setattr(sys, "argv", ["train.py", "--root", str(root), "--profile", "smoke"])
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(str(repo / "scripts" / "train.py"), run_name="__main__")
    return stop.value.code


def test_train_script_stopped_by_a_signal_exits_non_zero(tmp_path, monkeypatch, capsys):
    """scripts/train.py: a run stopped by SIGTERM has checkpointed but published nothing, so
    it must not look like a success, nor overwrite metrics/train.json."""
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "train.json").write_text('{"kept": true}\n', encoding="utf-8")
    code = run_train_script(tmp_path, monkeypatch, lambda cfg, **kw: {
        "stopped": "signal", "steps_done": 2, "steps": 10, "out_dir": None})
    assert code == 3
    assert "stopped by a signal at step 2 of 10" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics" / "train.json").read_text()) == {"kept": True}


def test_train_script_refusing_a_checkpoint_is_one_line(tmp_path, monkeypatch, capsys):
    def refuse(cfg, **kw):
        raise ValueError("checkpoint models/uwe_ckpt/last is unreadable: truncated\n(EOFError)")

    code = run_train_script(tmp_path, monkeypatch, refuse)
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert err.startswith("train.py: error: checkpoint models/uwe_ckpt/last is unreadable")


def test_the_notebook_and_the_script_share_one_training_entry(tmp_path, monkeypatch):
    """notebooks/02_train.ipynb calls train_main_model as scripts/train.py does: resume "auto"
    by default, and a run stopped by a signal raises (the notebook fails) instead of writing
    metrics/train.json as if it had finished."""
    import json as json_lib

    from uwe.config import load_params
    from uwe.train import loop as training

    repo = Path(__file__).resolve().parents[1]
    nb = json_lib.loads((repo / "notebooks" / "02_train.ipynb").read_text(encoding="utf-8"))
    code = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "train_main_model(P, ROOT, resume=resume)" in code and 'resume = "auto"' in code
    params = load_params(repo / "params.yaml", profile="smoke")
    calls = []

    def fake(cfg, **kw):
        calls.append(kw["resume"])
        return {"stopped": stopped, "steps_done": 2, "steps": 4, "out_dir": "x", "best_step": 2}

    monkeypatch.setattr(training, "train", fake)
    stopped = "signal"
    with pytest.raises(training.TrainingStopped, match="step 2 of 4"):
        training.train_main_model(params, tmp_path)
    assert not (tmp_path / "metrics" / "train.json").exists()
    stopped = None
    training.train_main_model(params, tmp_path)
    written = json_lib.loads((tmp_path / "metrics" / "train.json").read_text())
    assert written["steps_done"] == 2 and "out_dir" not in written and calls == ["auto", "auto"]


def test_stdin_that_is_not_utf8_is_one_line(run, root, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"nurse\ncaf\xe9\n")))
    one_line_error(*run("rank", "--model", "bm25", "--task", "job2skill", "--root", root),
                   r"stdin is not UTF-8 text \(byte 0xe9 at offset 9\)")


def test_global_options_work_after_the_command(run, root):
    rc, out, err = run("rank", "--threads", "1", "--verbose", "--model", "bm25", "--task",
                       "job2skill", "--root", root, "bake bread")
    assert rc == 0 and "bake bread" in out


def test_targets_from_a_pipe(run, tmp_path):
    """A FIFO (what `--targets <(...)` passes) is read as the stream it is, not 'not found'."""
    import threading

    fifo = tmp_path / "targets"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w", encoding="utf-8") as fh:
            fh.write("bake bread\ndrive a truck\n")

    writer = threading.Thread(target=write)
    writer.start()
    rc, out, err = run("rank", "--model", "bm25", "--no-cache", "--targets", fifo, "--format",
                       "csv", "bread")
    writer.join()
    assert rc == 0, err
    assert out.splitlines()[1].endswith(",bake bread")


def test_a_ranking_that_means_nothing_is_flagged(run, root, uwe_dir, caplog):
    """A query of characters the vocabulary does not know ranks with confident scores; a query
    sharing no word with any target ties every target at 0: both get a warning on stderr."""
    rc, out, _ = run("rank", "--model", uwe_dir, "--task", "job2skill", "--root", root,
                     "\U0001f984\U0001f984", "nurse")
    assert rc == 0 and "has no token the model knows (all [UNK])" in caplog.text
    assert "query 2" not in caplog.text
    caplog.clear()
    rc, out, _ = run("rank", "--model", "bm25", "--task", "job2skill", "--root", root, "zzzz")
    assert rc == 0 and "its top 10 targets all score 0" in caplog.text


def test_no_cache_at_the_root_when_home_is_empty(run, root, uwe_dir, monkeypatch):
    monkeypatch.delenv("UWE_CACHE_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", "")
    one_line_error(*run("rank", "--model", uwe_dir, "--task", "job2skill", "--root", root,
                        "nurse"), r"no folder for the cache: \$HOME is ''")


@pytest.mark.parametrize("engine", ["torch", "onnx"])
def test_a_mean_pooled_models_cache_entry_holds_its_pooled_vectors_only(run, root, tiny_backbone,
                                                                        tmp_path, engine):
    """A mean-scoring model reads one unit vector per target: its cache entry stores those
    (n_t, d) and not the token arrays it never reads; a hit ranks as the miss did."""
    from safetensors.numpy import load_file

    model = UWEModel.from_backbone(tiny_backbone, scorer="mean", device="cpu", batch_size=4)
    folder = save(model, tmp_path / "uwe-mean")
    argv = ("rank", "--model", folder, "--engine", engine, "--task", "job2skill", "--root",
            root, "--format", "csv", "nurse", "baker")
    rc, miss, err = run(*argv)
    assert rc == 0, err
    entries = list((tmp_path / "cache" / "index").rglob("*.safetensors"))
    assert len(entries) == 1
    arrays = load_file(entries[0])
    assert set(arrays) == {"pooled"} and arrays["pooled"].shape == (len(TARGETS), 32)
    rc, hit, err = run(*argv)
    assert rc == 0 and hit == miss
