"""uwe.train.loop on a tiny random BERT and tiny graphs: loss goes down, resume is exact, the
two-process (gloo) path gathers the global batch."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from uwe.config import GraphParams, TrainParams
from uwe.model.uwe_model import load
from uwe.train import checkpoint, distributed, frozen, step
from uwe.train import loop as training

REPO = Path(__file__).resolve().parents[1]
WORDS = ["python", "sql", "welding", "baking", "accounting", "driving", "nursing", "design",
         "teaching", "sales", "java", "plumbing", "carpentry", "marketing", "law", "physics"]
JOBS = ["software developer", "baker", "truck driver", "nurse", "teacher", "accountant",
        "plumber", "lawyer", "designer", "sales manager"]



def write_tiny_curated(root: Path) -> Path:
    """Five graphs (sj, sv, sa, jj, ss) over 32 skills / 10 jobs + a heldout job2skill val."""
    rng = np.random.default_rng(0)
    skills = [f"{a} {b}" for a in WORDS[:8] for b in ("basics", "advanced", "tools", "law")]
    sj = [(s, j) for j in JOBS for s in rng.choice(skills, 5, replace=False)]
    sv = [(s, f"we need {s} and {t} for the team") for s, t in
          zip(rng.choice(skills, 20), rng.choice(skills, 20), strict=True)]
    graphs = {
        "sj": sj, "sv": sv,
        "sa": [(s, f"{s} skills") for s in skills],  # one unique alias per skill
        "jj": [(j, f"senior {j}") for j in JOBS] + [(j, f"junior {j}") for j in JOBS],
        "ss": [(skills[i], skills[i + 1]) for i in range(0, len(skills) - 1, 2)],
    }
    (root / "graphs").mkdir(parents=True)
    for name, edges in graphs.items():
        df = pd.DataFrame(edges, columns=["left", "right"])
        df.to_parquet(root / "graphs" / f"{name}.parquet")
    val = root / "tasks" / "heldout" / "job2skill" / "val"
    val.mkdir(parents=True)
    pos = [sorted({skills.index(s) for s, j in sj if j == job}) for job in JOBS[:6]]
    pd.DataFrame({"query": JOBS[:6], "positives": pos}).to_parquet(val / "queries.parquet")
    pd.DataFrame({"target": skills}).to_parquet(val / "targets.parquet")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_backbone) -> tuple[str, Path]:
    torch.set_num_threads(1)  # tiny kernels: a second thread only adds synchronisation
    base = tmp_path_factory.mktemp("uwe_train")
    return tiny_backbone, write_tiny_curated(base / "curated")


def tiny_cfg(backbone: str, **kw) -> TrainParams:
    graphs = {"sj": GraphParams(1.0, 0.05), "sv": GraphParams(0.5, 0.02),
              "sa": GraphParams(0.5, 0.02), "jj": GraphParams(0.5, 0.02),
              "ss": GraphParams(0.5, 0.02)}
    base = dict(backbone=backbone, graphs=graphs, batch_size=6, steps=6, eval_every=3,
                lr=1e-3, warmup=0.2, device="cpu", val_max_queries=4, max_length=16,
                precision="fp32")  # exact comparisons; "auto" would follow the CPU's flags
    return TrainParams(**{**base, **kw})


def run(cfg, root, out: Path, **kw) -> dict:
    return training.train(cfg, seed=0, data_root=root, out_dir=out / "model",
                          checkpoint_dir=out / "ckpt", log_path=out / "log.csv",
                          progress=False, **kw)


def read_log(path: Path) -> list[dict]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def test_linear_schedule_warms_up_then_decays_to_zero():
    f = step.linear_schedule(10, 0.2)
    assert [f(k) for k in range(4)] == [0.5, 1.0, 1.0, 0.875]
    assert f(9) == pytest.approx(0.125) and f(10) == 0.0
    assert step.linear_schedule(5, 0.0)(0) == 1.0


def test_a_step_gives_finite_gradients_and_the_loss_goes_down(setup, tmp_path):
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=30, warmup=0.0, eval_every=0, lr=3e-3)
    info, device = distributed.DistInfo(), torch.device("cpu")
    trainer = training.Trainer(cfg, 0, root, tmp_path / "m", tmp_path / "c", info, device,
                               None, False)
    trainer.model.encoder.train()
    scored = step.step_scores(trainer.encode, trainer.model, trainer.batcher,
                                  trainer.batcher.sample(), info, trainer.autocast)
    loss, parts = trainer.loss_fn(scored)
    loss.backward()
    grads = [p.grad for p in trainer.model.encoder.parameters() if p.grad is not None]
    assert set(parts) == set(cfg.graphs) and len(grads) > 10
    assert all(torch.isfinite(g).all() for g in grads) and any(g.abs().sum() > 0 for g in grads)
    summary = run(cfg, root, tmp_path)
    losses = [float(r["loss"]) for r in read_log(tmp_path / "log.csv")]
    assert len(losses) == 30 and all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert summary["steps_done"] == 30 and summary["best_step"] == 30


@pytest.mark.parametrize(("log_deleted", "precision"),
                         [(False, "fp32"), (True, "fp32"), (False, "bf16")],
                         ids=["log-kept", "log-deleted", "bf16"])
def test_resume_after_a_crash_equals_an_uninterrupted_run(setup, tmp_path, monkeypatch,
                                                          log_deleted, precision):
    backbone, root = setup
    cfg = tiny_cfg(backbone, precision=precision)
    straight = run(cfg, root, tmp_path / "a")
    assert straight["steps_done"] == 6 and [h["step"] for h in straight["val_history"]] == [3, 6]

    real_step, calls = training.Trainer.train_step, {"n": 0}

    def crashing_step(self):
        calls["n"] += 1
        if calls["n"] == 5:  # steps 1-4 done, checkpoint at 3: the log holds a row past it
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(training.Trainer, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, root, tmp_path / "b")
    assert [r["step"] for r in read_log(tmp_path / "b" / "log.csv")] == ["1", "2", "3", "4"]
    if log_deleted:  # what `dvc repro` does to a stage's outputs before running it again
        (tmp_path / "b" / "log.csv").unlink()
    monkeypatch.setattr(training.Trainer, "train_step", real_step)
    resumed = run(cfg, root, tmp_path / "b")
    assert resumed["resumed_from"] == 3 and resumed["steps_done"] == 6

    a = load_file(tmp_path / "a" / "ckpt" / "last" / "model.safetensors")
    b = load_file(tmp_path / "b" / "ckpt" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    mask = os.umask(0o022)
    os.umask(mask)  # every checkpoint file as a plain open() makes it (safetensors writes 0600)
    assert {p.stat().st_mode & 0o777 for p in (tmp_path / "b" / "ckpt" / "last").iterdir()} == {
        0o666 & ~mask}
    log_a, log_b = read_log(tmp_path / "a" / "log.csv"), read_log(tmp_path / "b" / "log.csv")
    assert [r["step"] for r in log_b] == [str(s) for s in range(1, 7)]  # no duplicate steps
    for col in log_a[0]:
        if col not in ("step", "seconds"):
            np.testing.assert_allclose([float(r[col] or "nan") for r in log_b],
                                       [float(r[col] or "nan") for r in log_a], atol=1e-5,
                                       err_msg=col)
    assert resumed["best_step"] == straight["best_step"]
    assert resumed["best_val_map"] == pytest.approx(straight["best_val_map"], abs=1e-6)
    assert resumed["precision"] == straight["precision"] == precision
    model_cfg = json.loads((tmp_path / "b" / "model" / "uwe_config.json").read_text())
    assert model_cfg["step"] == resumed["best_step"]
    assert model_cfg["data"]["graph_edges"]["sa"] == 32
    assert model_cfg["graphs"]["sv"] == {"weight": 0.5, "temperature": 0.02}
    assert load(tmp_path / "b" / "model", device="cpu").score(["baker"], ["baking tools"]).shape \
        == (1, 1)


def test_sigterm_stops_at_a_step_boundary_and_the_run_resumes(setup, tmp_path, monkeypatch):
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=4, eval_every=0)
    real_step = training.Trainer.train_step

    def step_then_signal(self):
        out = real_step(self)
        if self.step == 1:  # during step 2 (self.step counts completed steps)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(training.Trainer, "train_step", step_then_signal)
    before = signal.getsignal(signal.SIGTERM)
    stopped = run(cfg, root, tmp_path)
    assert stopped["stopped"] == "signal" and stopped["steps_done"] == 2
    assert not (tmp_path / "model").exists()  # an interrupted run publishes nothing
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
    monkeypatch.setattr(training.Trainer, "train_step", real_step)
    done = run(cfg, root, tmp_path)
    assert done["resumed_from"] == 2 and done["steps_done"] == 4 and done["stopped"] is None
    assert (tmp_path / "model" / "model.safetensors").is_file()


def test_resume_refuses_a_checkpoint_of_another_config(setup, tmp_path):
    backbone, root = setup
    run(tiny_cfg(backbone, steps=2, eval_every=1, graphs={"sa": GraphParams()}), root, tmp_path)
    with pytest.raises(ValueError, match="batch_size"):
        run(tiny_cfg(backbone, steps=2, eval_every=1, batch_size=3,
                     graphs={"sa": GraphParams()}), root, tmp_path)
    fresh = run(tiny_cfg(backbone, steps=2, eval_every=1, batch_size=3,
                         graphs={"sa": GraphParams()}), root, tmp_path, resume=False)
    assert fresh["resumed_from"] is None and fresh["steps_done"] == 2
    # "auto" (the pipeline stage): a checkpoint of another config is discarded, not an error
    auto = run(tiny_cfg(backbone, steps=3, eval_every=1, batch_size=3,
                        graphs={"sa": GraphParams()}), root, tmp_path, resume="auto")
    assert auto["resumed_from"] is None and auto["steps_done"] == 3
    with pytest.raises(ValueError, match="resume"):
        run(tiny_cfg(backbone, steps=3, graphs={"sa": GraphParams()}), root, tmp_path,
            resume="yes")


def test_resume_discards_a_checkpoint_of_other_code_or_data(setup, tmp_path, monkeypatch):
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=2, eval_every=1, graphs={"sa": GraphParams(),
                                                            "ss": GraphParams()})
    first = run(cfg, root, tmp_path)
    # the same run again (nothing changed): the finished checkpoint is continued, its summary
    # and log kept, although the log file is gone
    (tmp_path / "log.csv").unlink()
    again = run(cfg, root, tmp_path, resume="auto")
    assert again["resumed_from"] == 2 and again["steps_done"] == 2
    assert again["last_loss"] == first["last_loss"] is not None
    assert again["global_batch"] == first["global_batch"] != {}
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == ["1", "2"]

    # changed training code: strict resume names it, "auto" trains from scratch
    real = checkpoint.run_fingerprint
    monkeypatch.setattr(training, "run_fingerprint",
                        lambda *a: {**real(*a), "code": "0" * 64})
    with pytest.raises(ValueError, match=r"code \(changed\)"):
        run(cfg, root, tmp_path)
    retrained = run(cfg, root, tmp_path, resume="auto")
    assert retrained["resumed_from"] is None and retrained["steps_done"] == 2
    assert [r["step"] for r in read_log(tmp_path / "log.csv")] == ["1", "2"]
    monkeypatch.setattr(training, "run_fingerprint", real)

    # changed data: one edge less in the S-S graph, same config and code
    data = tmp_path / "curated"
    shutil.copytree(root, data)
    run(cfg, data, tmp_path / "d")
    ss = pd.read_parquet(data / "graphs" / "ss.parquet")
    ss.iloc[:-1].to_parquet(data / "graphs" / "ss.parquet")
    with pytest.raises(ValueError, match=r"graph ss \(changed\)") as err:
        run(cfg, data, tmp_path / "d")
    assert "(it differs in graph ss (changed));" in str(err.value)  # and in nothing else
    assert run(cfg, data, tmp_path / "d", resume="auto")["resumed_from"] is None


def test_run_fingerprint_covers_code_torch_and_each_graph(setup):
    _, root = setup
    fp = checkpoint.run_fingerprint({"sj": None, "ss": None, "nope": None}, root)
    assert set(fp) == {"code", "torch", "graph sj", "graph ss"}
    assert fp == checkpoint.run_fingerprint({"ss": None, "sj": None}, root)
    assert fp["graph sj"] != fp["graph ss"] and len(fp["code"]) == 64


def test_max_minutes_stops_early_and_still_publishes(setup, tmp_path, caplog):
    backbone, root = setup
    with caplog.at_level(logging.WARNING, logger="uwe.train.loop"):
        summary = run(tiny_cfg(backbone, steps=50, max_minutes=1e-6), root, tmp_path)
    assert summary["stopped"] == "max_minutes" and summary["steps_done"] == 1
    # loud: the step a wall-clock cap stops at depends on the machine's speed
    assert "stopped the run at step 1 of 50" in caplog.text
    assert summary["best_step"] == 1 and (tmp_path / "model" / "uwe_config.json").is_file()


def test_missing_graph_file_is_named(setup, tmp_path):
    backbone, root = setup
    with pytest.raises(FileNotFoundError, match="sx.parquet"):
        run(tiny_cfg(backbone, graphs={"sx": GraphParams()}), root, tmp_path)


def _gather_grad_case():
    torch.manual_seed(0)
    lin = torch.nn.Linear(8, 8)
    x, y = torch.randn(6, 5, 8), torch.randn(6, 4, 8)
    x_mask = torch.ones(6, 5, dtype=torch.bool)
    x_mask[::2, 3:] = False  # ragged lengths
    pos = torch.eye(6, dtype=torch.bool)
    pos[0, 3] = True
    return lin, x, x_mask, y, torch.ones(6, 4, dtype=torch.bool), pos


def _global_loss(x_emb, x_mask, y_emb, y_mask, pos):
    from uwe.core.losses import info_nce_many_to_many
    from uwe.core.scoring import sli_scores

    return info_nce_many_to_many(sli_scores(x_emb, x_mask, y_emb, y_mask), pos, 0.05)


def _gather_grad_worker(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    lin, x, x_mask, y, y_mask, pos = _gather_grad_case()
    ddp = DistributedDataParallel(lin)
    rows = slice(3 * rank, 3 * rank + 3)  # this rank's half of the global batch
    xe, xm = step.gather_tokens(ddp(x[rows]), x_mask[rows], [3, 3])
    ye, ym = step.gather_tokens(ddp(y[rows]), y_mask[rows], [3, 3])
    _global_loss(xe, xm, ye, ym, pos).backward()
    torch.save(lin.weight.grad, Path(out) / f"grad{rank}.pt")
    dist.destroy_process_group()


def test_gathered_two_process_gradient_equals_the_single_process_one(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mp.spawn(_gather_grad_worker, args=(port, str(tmp_path)), nprocs=2, join=True)
    lin, x, x_mask, y, y_mask, pos = _gather_grad_case()
    _global_loss(lin(x), x_mask, lin(y), y_mask, pos).backward()
    for rank in (0, 1):
        grad = torch.load(tmp_path / f"grad{rank}.pt", weights_only=True)
        torch.testing.assert_close(grad, lin.weight.grad, atol=1e-5, rtol=1e-5)


def test_two_process_gloo_training_gathers_the_global_batch(setup, tmp_path):
    if shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None:
        pytest.skip("torchrun not installed beside the interpreter")
    backbone, root = setup
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1",
           "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
           "2", str(REPO / "scripts" / "train_ddp_smoke.py"), "--root", str(root),
           "--backbone", backbone, "--out", str(tmp_path), "--graphs", "sa", "sj",
           "--batch-size", "4", "--steps", "2"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((tmp_path / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    for s in ranks:
        assert s["world_size"] == 2 and s["steps_done"] == 2
        assert s["global_batch"]["sa"] == [8, 8]  # 2 ranks x 4 skills, unique aliases
        assert s["global_batch"]["sj"][0] == 8
    assert ranks[0]["last_loss"] == pytest.approx(ranks[1]["last_loss"], rel=1e-5)
    assert (tmp_path / "model" / "model.safetensors").is_file()  # rank 0 wrote the model
    assert ranks[0]["out_dir"] and ranks[1]["out_dir"] is None
    assert len(read_log(tmp_path / "log.csv")) == 2


def test_encode_sides_equals_encoding_each_side_alone(setup):
    from uwe.model.encoder import TokenEncoder

    backbone, _ = setup
    enc = TokenEncoder.from_pretrained(backbone, max_length=8).eval()
    sides = [["a", "python programming basics"], ["one two three four five six seven"],
             ["sql", "x y", "baking bread at night", "z"]]
    with torch.no_grad():
        together = step.encode_sides(enc, enc.token_lengths, sides, chunk=3)
        for side, (emb, mask) in zip(sides, together, strict=True):
            ref_emb, ref_mask = enc(side)
            assert torch.equal(mask, ref_mask)
            torch.testing.assert_close(emb[mask], ref_emb[ref_mask], atol=1e-5, rtol=1e-5)


def test_cache_texts_are_the_same_for_every_subset_of_graphs(tmp_path):
    """The frozen-bottom cache key hashes this list: a run on a subset of the graphs (a
    transfer run, ``no_synthetic``) must list the texts in the main model's order, so that it
    reads the main model's cache instead of building one of its own."""
    from uwe.core.batching import MultiGraphBatcher

    root = write_tiny_curated(tmp_path / "curated")
    full = frozen.cache_texts(
        MultiGraphBatcher.from_root(["sj", "sv", "sa", "jj", "ss"], root, 4, seed=0), root)
    assert len(full) == len(set(full))
    for subset in (["sj"], ["sv"], ["jj", "ss"], ["sj", "sa", "jj", "ss"]):
        batcher = MultiGraphBatcher.from_root(subset, root, 4, seed=1)
        assert frozen.cache_texts(batcher, root) == full, subset


@pytest.mark.parametrize("damaged", ["trainer_state.pt", "model.safetensors",
                                     "checkpoint.json"])
def test_an_unreadable_checkpoint_is_discarded_by_auto_and_named_by_strict(
        setup, tmp_path, monkeypatch, caplog, damaged):
    """resume="auto" (the pipeline's) discards an unreadable checkpoint with a warning that
    names it and trains from scratch, the same as a fresh run; resume=True stops with a
    ValueError naming it instead of a PyTorch stream error."""
    backbone, root = setup
    cfg = tiny_cfg(backbone, steps=4, eval_every=2)
    fresh = run(cfg, root, tmp_path / "a")
    real_step, calls = training.Trainer.train_step, {"n": 0}

    def crashing_step(self):
        calls["n"] += 1
        if calls["n"] == 3:  # checkpoint at step 2, then a crash
            raise RuntimeError("simulated crash")
        return real_step(self)

    monkeypatch.setattr(training.Trainer, "train_step", crashing_step)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run(cfg, root, tmp_path / "b")
    monkeypatch.setattr(training.Trainer, "train_step", real_step)
    path = tmp_path / "b" / "ckpt" / "last" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match=r"checkpoint .*last is unreadable"):
        run(cfg, root, tmp_path / "b", resume=True)
    assert path.is_file()  # strict: nothing discarded
    with caplog.at_level("WARNING", logger="uwe.train.loop"):
        resumed = run(cfg, root, tmp_path / "b", resume="auto")
    assert any("unreadable" in r.getMessage() and "last" in r.getMessage()
               for r in caplog.records)
    assert resumed["resumed_from"] is None and resumed["steps_done"] == 4
    a = load_file(tmp_path / "a" / "model" / "model.safetensors")
    b = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-5
    assert resumed["best_val_map"] == pytest.approx(fresh["best_val_map"], abs=1e-6)
