"""uwe.model.registry: one answer to "which model does this spec name?", with an explicit kind;
uwe.infer.loader: the same model with serving's fast parts, scoring as the model floor does."""

from __future__ import annotations

import numpy as np
import pytest

from uwe.model import registry

QUERIES = ["registered nurse", "software developer in python", "baker"]
TARGETS = ["nursing care", "python programming", "bake bread and pastry", "drive a truck",
           "develop software"]


@pytest.fixture(scope="module")
def uwe_folder(tiny_backbone, tmp_path_factory):
    from uwe.model.uwe_model import UWEModel, save

    model = UWEModel.from_backbone(tiny_backbone, "sli", attention_temperature=0.5,
                                   max_length=32, device="cpu")
    return save(model, tmp_path_factory.mktemp("reg") / "uwe-sli")


def test_resolve_names_each_kind(uwe_folder, tiny_backbone, tmp_path):
    ref = registry.resolve(str(uwe_folder))
    assert (ref.kind, ref.scorer, ref.path, ref.st_folder) == ("uwe", "sli", uwe_folder, False)
    assert registry.resolve(uwe_folder.name, root=uwe_folder.parent).path == uwe_folder
    assert registry.resolve("bm25").kind == "lexical"
    assert registry.resolve("tfidf_char").kind == "lexical"
    emb = registry.resolve("all-MiniLM-L6-v2")
    assert (emb.kind, emb.scorer, emb.name) == ("embedding", "mean", "all-MiniLM-L6-v2")
    untuned = registry.resolve("untuned:maxsim", backbone=tiny_backbone)
    assert (untuned.kind, untuned.scorer, untuned.backbone) == ("untuned", "maxsim",
                                                                tiny_backbone)
    # bare "untuned" takes the scorer given beside it (the analyses' train.scorer)
    assert registry.resolve("untuned", backbone=tiny_backbone, scorer="mean").scorer == "mean"


def test_resolve_refuses_what_names_nothing(tiny_backbone, tmp_path):
    with pytest.raises(FileNotFoundError, match="models/missing"):
        registry.resolve("models/missing", root=tmp_path)
    with pytest.raises(ValueError, match="needs the backbone"):
        registry.resolve("untuned:sli")
    with pytest.raises(ValueError, match="sli_soft"):
        registry.resolve("untuned:sli_soft", backbone=tiny_backbone)
    with pytest.raises(ValueError, match="non-empty"):
        registry.resolve("  ")


def test_every_loaded_model_declares_its_kind(uwe_folder, tiny_backbone):
    assert registry.kind_of(registry.load(str(uwe_folder), device="cpu")) == "uwe"
    assert registry.kind_of(registry.load("bm25")) == "lexical"
    untuned = registry.load("untuned:mean", backbone=tiny_backbone, device="cpu", max_length=32)
    assert registry.kind_of(untuned) == "uwe" and untuned.scorer_name == "mean"
    with pytest.raises(ValueError, match="declares no model kind"):
        registry.kind_of(object())


def test_serving_scores_as_the_model_floor(uwe_folder):
    """The loader's model swaps in the fused kernel (sli_dense_blocks); the model floor's torch
    path (what training validates with) gives the same scores up to float rounding."""
    from uwe.core.scoring import sli_unpadded_blocks
    from uwe.infer.dense import sli_dense_blocks
    from uwe.infer.loader import load, load_model

    floor = registry.load(str(uwe_folder), device="cpu")
    served = load_model(str(uwe_folder), device="cpu")
    assert floor.sli_blocks is sli_unpadded_blocks and served.sli_blocks is sli_dense_blocks
    assert load(uwe_folder, device="cpu").sli_blocks is sli_dense_blocks
    a, b = floor.score(QUERIES, TARGETS), served.score(QUERIES, TARGETS)
    assert a.shape == (3, 5) and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, atol=2e-6, rtol=1e-5)


def test_model_slug_is_one_function():
    from uwe.infer import index_cache

    assert registry.model_slug("sentence-transformers/all-MiniLM-L6-v2") == "all-MiniLM-L6-v2"
    assert registry.model_slug("models/uwe/") == "uwe"
    assert registry.model_slug("a b:c") == "a_b_c"
    assert index_cache.model_slug is registry.model_slug
    with pytest.raises(ValueError, match="file name"):
        registry.model_slug("///")
