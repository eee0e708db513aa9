"""A saved UWE folder loads exactly in sentence-transformers (uwe.infer.st_folder): the same
embeddings and scores as uwe's, at UWE's max length, on a tiny random BERT."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from uwe.core.scoring import sli_similarity
from uwe.infer.model import UWEModel, save

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
