"""A saved UWE folder loads exactly in sentence-transformers (uwe.model.st_folder): the same
embeddings and scores as uwe's, at UWE's max length, on a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from uwe.core.scoring import sli_similarity
from uwe.model.uwe_model import UWEModel, save

st = pytest.importorskip("sentence_transformers")

QUERIES = ["python programming", "manage a team", "x"]
TARGETS = ["software developer", "baker", "team leader in a large software company"]
LONG = " ".join(["data"] * 100)  # beyond the max length of 16 tokens


@pytest.fixture(scope="module")
def backbone(tiny_backbone) -> str:
    torch.set_num_threads(1)
    return tiny_backbone


def _saved(backbone, tmp_path, scorer):
    model = UWEModel.from_backbone(backbone, scorer=scorer, attention_temperature=0.5,
                                   max_length=16, device="cpu", batch_size=4)
    return model, save(model, tmp_path / scorer)


def test_mean_pooled_folder_loads_in_sentence_transformer(backbone, tmp_path, caplog):
    model, folder = _saved(backbone, tmp_path, "mean")
    loaded = st.SentenceTransformer(str(folder), device="cpu")
    assert loaded.max_seq_length == 16
    assert "MISSING" not in caplog.text
    queries, targets = [*QUERIES, LONG], [*TARGETS, LONG]
    q = loaded.encode(queries, convert_to_tensor=True)
    t = loaded.encode(targets, convert_to_tensor=True)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(queries)), atol=1e-5)
    np.testing.assert_allclose(loaded.similarity(q, t).numpy(), model.score(queries, targets),
                               atol=1e-5)
    config = json.loads((folder / "config_sentence_transformers.json").read_text())
    assert config["model_type"] == "SentenceTransformer"


@pytest.mark.parametrize("scorer,attention", [("sli", "raw"), ("sli_cos", "cosine")])
def test_token_folder_loads_in_multi_vector_encoder(backbone, tmp_path, scorer, attention):
    model, folder = _saved(backbone, tmp_path, scorer)
    loaded = st.MultiVectorEncoder(str(folder), device="cpu")
    assert loaded.max_seq_length == 16
    queries, targets = [*QUERIES, LONG], [*TARGETS, LONG]
    q = loaded.encode(queries)
    t = loaded.encode(targets)
    model.encoder.eval()
    with torch.inference_mode():
        emb, mask = model.encoder([LONG])
    assert q[-1].shape[0] == 16 and torch.allclose(q[-1], emb[0][mask[0]], atol=1e-5)
    np.testing.assert_allclose(sli_similarity(q, t, 0.5, attention).numpy(),
                               model.score(queries, targets), atol=1e-5)
    assert json.loads((folder / "modules.json").read_text())[-1]["path"] == "1_MultiVectorMask"


def test_sli_similarity_rejects_bad_inputs():
    with pytest.raises(ValueError, match="attention must be one of"):
        sli_similarity([torch.zeros(2, 4)], [torch.zeros(3, 4)], 0.1, "dot")
    with pytest.raises(ValueError, match=r"token embeddings 1: shape \(3, 5\)"):
        sli_similarity([torch.zeros(2, 4)], [torch.zeros(3, 4), torch.zeros(3, 5)], 0.1)
    with pytest.raises(ValueError, match="no token embeddings"):
        sli_similarity([], [torch.zeros(3, 4)], 0.1)


# ------------------------------------------------------------------ the other way: uwe.load
def _library_folder(backbone, path, *modules_after, cls="SentenceTransformer", max_len=16):
    from sentence_transformers.base.modules.transformer import Transformer

    transformer = Transformer(backbone, max_seq_length=max_len)
    model = getattr(st, cls)(modules=[transformer, *modules_after], device="cpu")
    model.save(str(path))
    return model


def test_a_sentence_transformers_folder_loads_in_uwe(backbone, tmp_path):
    """A folder the library wrote (mean Pooling + Normalize) ranks in uwe as in the library,
    at its max_seq_length, a text beyond it included."""
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    import uwe

    lib = _library_folder(backbone, tmp_path / "st", Pooling(32, "mean"), Normalize())
    model = uwe.load(tmp_path / "st", device="cpu")
    assert model.scorer_name == "mean" and model.encoder.max_length == 16
    queries, targets = [*QUERIES, LONG], [*TARGETS, LONG]
    q, t = lib.encode(queries, convert_to_tensor=True), lib.encode(targets, convert_to_tensor=True)
    np.testing.assert_allclose(model.score(queries, targets), lib.similarity(q, t).numpy(),
                               atol=1e-5)


def test_a_multi_vector_folder_of_unit_tokens_loads_as_maxsim(backbone, tmp_path):
    from sentence_transformers.base.modules.normalize import Normalize

    import uwe

    lib = _library_folder(backbone, tmp_path / "mve", Normalize("token_embeddings"),
                          cls="MultiVectorEncoder")
    model = uwe.load(tmp_path / "mve", device="cpu")
    assert model.scorer_name == "maxsim"
    queries, targets = [*QUERIES, LONG], [*TARGETS, LONG]
    q, t = lib.encode(queries), lib.encode(targets)
    # the library's MaxSim sums over the query tokens, UWE's averages: the same ranking
    lengths = np.array([[len(x)] for x in q], dtype=np.float32)
    np.testing.assert_allclose(model.score(queries, targets),
                               lib.similarity(q, t).numpy() / lengths, atol=1e-5)


@pytest.mark.parametrize("case,match", [
    ("cls", r"modules\.json: module 1 \(Pooling\) pools with 'cls'"),
    ("dense", r"modules\.json: module 3 \(Dense\) has no UWE equivalent"),
    ("prompt", r"config_sentence_transformers\.json: prompts \{'query': 'query: '\}"),
    ("lower", r"sentence_bert_config\.json: do_lower_case"),
    ("raw_tokens", r"modules\.json: the token embeddings are not normalised"),
])
def test_a_folder_the_library_computes_otherwise_is_refused_in_one_line(backbone, tmp_path, case,
                                                                        match):
    from sentence_transformers.base.modules.dense import Dense
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    import uwe
    from uwe.errors import InputError

    path = tmp_path / case
    if case == "cls":
        _library_folder(backbone, path, Pooling(32, "cls"))
    elif case == "dense":
        _library_folder(backbone, path, Pooling(32, "mean"), Normalize(), Dense(32, 8))
    elif case == "raw_tokens":  # Normalize of the (absent) sentence embedding: tokens stay raw
        _library_folder(backbone, path, Normalize(), cls="MultiVectorEncoder")
    else:
        _library_folder(backbone, path, Pooling(32, "mean"))
        name = ("config_sentence_transformers.json" if case == "prompt"
                else "sentence_bert_config.json")
        cfg = json.loads((path / name).read_text())
        cfg.update({"prompts": {"query": "query: ", "document": ""}} if case == "prompt"
                   else {"do_lower_case": True})
        (path / name).write_text(json.dumps(cfg))
    with pytest.raises(InputError, match=match) as err:
        uwe.load(path, device="cpu")
    assert "\n" not in str(err.value)


def test_a_folder_of_an_older_version_loads(backbone, tmp_path):
    """A UWE folder written before the sentence-transformers files and the pooler / format keys
    existed (its backbone still with the pooler head) loads with the same scores."""
    import shutil

    import uwe

    model = UWEModel.from_backbone(backbone, scorer="sli", attention_temperature=0.5,
                                   max_length=16, device="cpu", batch_size=4)
    folder = save(model, tmp_path / "new")
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    for name in ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        (old / name).unlink()
    shutil.rmtree(old / "1_MultiVectorMask")
    cfg = json.loads((old / "uwe_config.json").read_text())
    for key in ("pooler", "format_version"):
        cfg.pop(key, None)
    (old / "uwe_config.json").write_text(json.dumps(cfg))
    shutil.copy(Path(backbone) / "model.safetensors", old / "model.safetensors")  # with pooler
    np.testing.assert_allclose(uwe.load(old, device="cpu").score(QUERIES, TARGETS),
                               model.score(QUERIES, TARGETS), atol=1e-6)
