"""A UWE folder that is also a complete sentence-transformers folder (6.x).

The keys below are the ones sentence-transformers 6.2 reads (``base/model.py`` loads
``modules.json`` and ``config_sentence_transformers.json``; ``base/modules/transformer.py`` the
root's ``sentence_bert_config.json``; ``sentence_transformer/modules/pooling.py`` and
``base/modules/normalize.py`` their ``config.json``; ``multi_vector_encoder/model.py`` and
``multi_vector_encoder/modules/multi_vector_mask.py`` the token-level class):

* a **mean-pooled** UWE (``scorer: mean``) loads with ``SentenceTransformer(path)`` as
  Transformer (the root's backbone) -> mean Pooling -> Normalize, which gives UWE's unit
  mean-pooled vectors, and cosine (= dot of those) is UWE's score;
* a **token-level** UWE (every other scorer) loads with ``MultiVectorEncoder(path)`` as
  Transformer -> MultiVectorMask with nothing masked: ``encode`` returns each text's raw token
  embeddings (special tokens included, padding removed), no projection, no normalisation, no
  query expansion or prefix; :func:`uwe.sli_similarity` scores them as UWE does.

``sentence_bert_config.json`` carries UWE's ``max_length`` (sentence-transformers' own saves put
it only in the tokenizer config, where the backbone's 512 would win) and, for a backbone saved
without its pooler (UWE drops it), ``model_kwargs.add_pooling_layer: false``, so that loading
neither builds a random pooler nor prints a "MISSING" load report.
"""

from __future__ import annotations

import json
from pathlib import Path

#: sentence-transformers module types (6.x class paths; the legacy ``models.*`` are aliases)
TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
MULTI_VECTOR_MASK = ("sentence_transformers.multi_vector_encoder.modules.multi_vector_mask."
                     "MultiVectorMask")
ST_FILES = ("modules.json", "sentence_bert_config.json", "config_sentence_transformers.json")
SENTENCE_LEVEL_SCORERS = ("mean",)


def library_class(scorer: str) -> str:
    """The sentence-transformers class that loads a UWE folder of ``scorer``."""
    return "SentenceTransformer" if scorer in SENTENCE_LEVEL_SCORERS else "MultiVectorEncoder"


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n", encoding="utf-8")


def write_st_files(folder: str | Path, scorer: str, max_length: int, hidden_size: int,
                   pooler: bool) -> list[Path]:
    """Write the sentence-transformers files of a UWE model into ``folder`` (which already holds
    the backbone's ``config.json``, weights and tokenizer files) -> the files written."""
    folder = Path(folder)
    bert_config: dict = {"max_seq_length": int(max_length), "do_lower_case": False}
    if not pooler:
        bert_config["model_kwargs"] = {"add_pooling_layer": False}
    written = [folder / "sentence_bert_config.json"]
    _write(written[0], bert_config)
    modules = [{"idx": 0, "name": "0", "path": "", "type": TRANSFORMER}]
    if library_class(scorer) == "SentenceTransformer":
        modules += [{"idx": 1, "name": "1", "path": "1_Pooling", "type": POOLING},
                    {"idx": 2, "name": "2", "path": "2_Normalize", "type": NORMALIZE}]
        written += [folder / "1_Pooling" / "config.json", folder / "2_Normalize" / "config.json"]
        _write(written[-2], {"embedding_dimension": int(hidden_size), "pooling_mode": "mean",
                             "include_prompt": True})
        _write(written[-1], {"module_input_name": "sentence_embedding",
                             "module_output_name": "sentence_embedding"})
        st_config = {"model_type": "SentenceTransformer", "similarity_fn_name": "cosine"}
    else:
        modules += [{"idx": 1, "name": "1", "path": "1_MultiVectorMask",
                     "type": MULTI_VECTOR_MASK}]
        written.append(folder / "1_MultiVectorMask" / "config.json")
        _write(written[-1], {"skiplist_words": [], "skiplist_tasks": ["document"],
                             "keep_only_token_ids": None})
        # maxsim is the library's default token similarity; UWE's own score is
        # uwe.sli_similarity (the model card says so)
        st_config = {"model_type": "MultiVectorEncoder", "similarity_fn_name": "maxsim"}
    st_config.update(prompts={"query": "", "document": ""}, default_prompt_name=None)
    written += [folder / "modules.json", folder / "config_sentence_transformers.json"]
    _write(written[-2], modules)
    _write(written[-1], st_config)
    return written
