"""uwe.model.uwe_model on a tiny random BERT: caching, batching and padding invariance,
save/load."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from uwe.core.scoring import SCORERS, get_scorer
from uwe.model import encoder as encoder_lib
from uwe.model import uwe_model as model_lib
from uwe.model.encoder import TokenEncoder
from uwe.model.uwe_model import UWEModel, load, save

QUERIES = ["python programming", "manage a team of engineers", "sql", "bake bread",
           "data analysis with spreadsheets and dashboards for finance", "drive a truck", "x"]
TARGETS = ["software developer", "baker", "truck driver", "financial analyst",
           "database administrator", "team leader in a large software company", "chef",
           "statistician", "logistics", "a"]



@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> str:
    # One thread: on a busy 2-core machine, OpenMP synchronisation makes the tiny model's
    # kernels ~50x slower with 2 threads.
    torch.set_num_threads(1)
    return tiny_backbone


@pytest.fixture(scope="module")
def model(backbone) -> UWEModel:
    return UWEModel.from_backbone(backbone, scorer="sli", device="cpu", batch_size=4)


def test_token_encoder_shapes_mask_and_truncation(backbone):
    enc = TokenEncoder.from_pretrained(backbone, max_length=6)
    emb, mask = enc(["a b", "one two three four five six seven eight"])
    assert emb.shape == (2, 6, 32) and mask.shape == (2, 6) and mask.dtype == torch.bool
    assert mask.sum(1).tolist() == [4, 6]  # [CLS] a b [SEP] / truncated to max_length
    assert enc.backbone.pooler is None  # pooler dropped: last_hidden_state only
    empty, empty_mask = enc([])
    assert empty.shape[0] == 0 and empty_mask.shape[0] == 0


@pytest.mark.parametrize("scorer", sorted(SCORERS))
def test_score_equals_score_index_and_a_per_text_reference(model, scorer):
    m = UWEModel(model.encoder, scorer=scorer, batch_size=3)
    index = m.index_targets(TARGETS)
    cached = m.score_index(QUERIES, index)
    assert cached.dtype == np.float32 and cached.shape == (len(QUERIES), len(TARGETS))
    np.testing.assert_array_equal(m.score(QUERIES, TARGETS), cached)
    m.encoder.eval()
    with torch.inference_mode():  # reference: every text encoded alone, no padding at all
        q = [m.encoder([t]) for t in QUERIES]
        t = [m.encoder([x]) for x in TARGETS]
        fn = get_scorer(scorer).all_pairs
        ref = np.array([[float(fn(qe, qm, te, tm, attention_temperature=0.1))
                         for te, tm in t] for qe, qm in q])
    np.testing.assert_allclose(cached, ref, atol=1e-5)


def test_batch_size_and_score_budget_do_not_change_scores(model):
    one = UWEModel(model.encoder, batch_size=1).score(QUERIES, TARGETS)
    seven = UWEModel(model.encoder, batch_size=7).score(QUERIES, TARGETS)
    tiny_budget = UWEModel(model.encoder, batch_size=7, score_budget=1).score(QUERIES, TARGETS)
    np.testing.assert_allclose(one, seven, atol=1e-5)
    np.testing.assert_allclose(tiny_budget, seven, atol=1e-5)


def test_rank_follows_the_scores(model):
    index = model.index_targets(TARGETS)
    scores = model.score_index(QUERIES, index)
    ranked = model.rank(QUERIES, index, top_k=4)
    for row, top in zip(scores, ranked, strict=True):
        order = np.argsort(-row, kind="stable")[:4]
        assert [t for t, _ in top] == [TARGETS[j] for j in order]
        assert [s for _, s in top] == pytest.approx([float(row[j]) for j in order])
    assert len(model.rank(QUERIES[:1], index, top_k=100)[0]) == len(TARGETS)


def test_inference_restores_training_mode(model):
    model.encoder.train()
    model.score(QUERIES[:2], TARGETS[:2])
    assert model.encoder.training
    model.encoder.eval()


def test_save_load_round_trip(model, tmp_path):
    path = save(model, tmp_path / "uwe", extra_config={"graphs": {"sj": {"weight": 1.0}},
                                                       "data": {"graph_edges": {"sj": 3}}})
    files = sorted(os.listdir(path))
    assert "model.safetensors" in files and "config.json" in files and "uwe_config.json" in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp leftovers
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o777 & ~mask  # not tempfile's private 0700
    cfg = json.loads((path / "uwe_config.json").read_text())
    assert cfg["scorer"] == "sli" and cfg["max_length"] == 64
    assert cfg["attention_temperature"] == 0.1 and cfg["uwe_version"]
    assert cfg["graphs"] == {"sj": {"weight": 1.0}} and cfg["data"]["graph_edges"] == {"sj": 3}
    loaded = load(path, device="cpu", batch_size=model.batch_size)
    assert loaded.scorer_name == "sli" and loaded.encoder.backbone.pooler is None
    np.testing.assert_array_equal(loaded.score(QUERIES, TARGETS), model.score(QUERIES, TARGETS))
    save(loaded, path)  # overwriting an existing folder works
    assert (path / "model.safetensors").is_file()


def test_save_writes_a_model_card_from_the_config(model, tmp_path):
    extra = {"graphs": {"sj": {"temperature": 0.05, "weight": 1.0}},
             "data": {"graph_edges": {"sj": 828851}}, "step": 220, "seed": 0,
             "train": {"loss": "many_to_many", "batch_size": 128, "frozen_layers": 3,
                       "lr": 1e-4, "warmup": 0.1},
             "val": {"macro_map": 0.4125, "max_queries": 200, "tasks": {"job_norm": 0.3630}}}
    card = (save(model, tmp_path / "uwe", extra_config=extra) / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: uwe\n")
    for line in ["| scorer | `sli` |", "| pairs seen per graph | 28160 |",
                 "| frozen bottom layers | 3 |", "| sj | 828851 | 0.05 | 1.0 |",
                 "| job_norm | 36.30 |", "macro **41.25**", "at most 200 queries per task"]:
        assert line in card, line
    bare = (save(model, tmp_path / "bare") / "README.md").read_text()  # no training info
    assert "| scorer | `sli` |" in bare and "## Training" not in bare
    assert "## Validation" not in bare
    # which sentence-transformers class loads the folder, and how UWE's score is computed
    assert "loaded by `MultiVectorEncoder`" in card
    assert "uwe.sli_similarity(q, t, 0.1, 'raw')" in card
    mean = UWEModel(model.encoder, scorer="mean")
    mean_card = (save(mean, tmp_path / "mean") / "README.md").read_text()
    assert "loaded by `SentenceTransformer`" in mean_card and "model.similarity(q, t)" in mean_card


def test_load_errors_name_the_problem(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        load(tmp_path / "nowhere")
    path = save(model, tmp_path / "m")
    cfg = json.loads((path / "uwe_config.json").read_text())
    (path / "uwe_config.json").write_text(json.dumps({**cfg, "scorer": "bogus"}))
    with pytest.raises(ValueError, match="bogus"):
        load(path)
    (path / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load(path)


def test_unknown_scorer_and_bad_temperature_are_rejected(model):
    with pytest.raises(ValueError, match="unknown scorer"):
        UWEModel(model.encoder, scorer="colbertish")
    with pytest.raises(ValueError, match="attention_temperature"):
        UWEModel(model.encoder, attention_temperature=0.0)


def test_transformer_folder_follows_modules_json(tmp_path, backbone):
    (tmp_path / "0_Transformer").mkdir()
    (tmp_path / "0_Transformer" / "config.json").write_text("{}")
    (tmp_path / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "0_Transformer",
          "type": "sentence_transformers.models.Transformer"}]))
    assert encoder_lib.transformer_folder(tmp_path) == tmp_path / "0_Transformer"
    assert str(encoder_lib.transformer_folder(backbone)) == backbone


def test_subset_of_an_index_scores_like_a_fresh_index(model):
    index = model.index_targets(TARGETS)
    part = [TARGETS[7], TARGETS[0], TARGETS[3]]
    np.testing.assert_allclose(model.score_index(QUERIES, index.subset(part)),
                               model.score(QUERIES, part), atol=1e-5)
    with pytest.raises(ValueError, match="not in the index"):
        index.subset(["unknown target"])


@pytest.mark.parametrize("cache_mb", [0, 64])
def test_merged_buckets_hold_one_length_each_and_every_text_once(model, cache_mb):
    m = UWEModel(model.encoder, batch_size=2, text_cache_mb=cache_mb)
    texts = QUERIES + TARGETS
    lengths = m.encoder.token_lengths(texts)
    with m._inference():
        split = m._bucket_batches(texts, 2, merge=False)  # the encoder's batches of <= 2 texts
        merged = m._encode_buckets(texts)
    assert all(b.emb.shape[0] <= 2 for b in split)
    sizes = [b.emb.shape[1] for b in merged]
    assert sizes == sorted(set(lengths.tolist()), reverse=True)  # one bucket per length
    for buckets in (split, merged):
        index = torch.cat([b.index for b in buckets]).sort().values
        assert torch.equal(index, torch.arange(len(texts)))
        for b in buckets:
            assert b.unpadded and (lengths[b.index.numpy()] == b.emb.shape[1]).all()
    emb = {int(i): row for b in split for i, row in zip(b.index, b.emb, strict=True)}
    for b in merged:
        for i, row in zip(b.index, b.emb, strict=True):
            torch.testing.assert_close(row, emb[int(i)], rtol=0, atol=1e-6)


@pytest.mark.parametrize("scorer", model_lib.POOLED_TARGET_SCORERS)
def test_pooled_target_path_masks_padding(model, scorer):
    """mean / sli_mean_target score padded buckets with one product against the index's pooled
    targets (TargetIndex.pooled); padded positions, even NaN, never count."""
    from uwe.model.uwe_model import Bucket, TargetIndex

    torch.manual_seed(0)
    emb = torch.randn(3, 4, 8)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=torch.bool)
    emb[~mask] = float("nan")
    m = UWEModel(model.encoder, scorer=scorer)
    index = TargetIndex(["a", "b", "c"], [Bucket(torch.tensor([2, 0, 1]), emb, mask)])
    q = Bucket(torch.arange(3), emb.clone(), mask)
    got = m._score_block(q, index)  # (3, 3) in target order
    clean = torch.where(mask[..., None], emb, torch.zeros(()))
    ref = get_scorer(scorer).all_pairs(clean, mask, clean, mask)[:, [1, 2, 0]]
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-5)
    assert index.pooled() is index.pooled()  # computed once
