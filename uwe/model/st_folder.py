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
from dataclasses import dataclass
from pathlib import Path

from uwe.errors import InputError

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


# ------------------------------------------------------------------------------ reading
#: the library's legacy Pooling keys (``pooling_mode_<x>: true``) and the mode each stands for
LEGACY_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                  "pooling_mode_mean_tokens": "mean",
                  "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                  "pooling_mode_weightedmean_tokens": "weightedmean",
                  "pooling_mode_lasttoken": "lasttoken"}


#: top-level keys of a PyLate (<= 3) / ColBERT config_sentence_transformers.json, which the
#: library turns into query expansion, [Q] / [D] markers and token skiplists
PYLATE_KEYS = ("query_prefix", "document_prefix", "query_length", "document_length",
               "query_expansion", "do_query_expansion", "attend_to_expansion_tokens",
               "attend_to_mask_tokens", "skiplist_words")


@dataclass(frozen=True)
class STFolder:
    """What a sentence-transformers folder computes, in UWE's terms: the backbone's folder, the
    UWE scorer that gives the library's ranking, and the max length."""

    root: Path
    transformer: Path  # the folder of the backbone's config.json, weights and tokenizer
    model_type: str  # SentenceTransformer / MultiVectorEncoder
    scorer: str  # mean (cosine of mean-pooled tokens) / maxsim (mean of max token cosines)
    max_length: int


def _module_class(entry: dict) -> str:
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def _pooling_mode(config: dict) -> object:
    if "pooling_mode" in config:
        return config["pooling_mode"]
    modes = [mode for key, mode in LEGACY_POOLING.items() if config.get(key)]
    return modes[0] if len(modes) == 1 else modes


def read_st_folder(root: str | Path) -> STFolder:
    """The :class:`STFolder` of the sentence-transformers folder ``root`` (``modules.json``);
    one InputError naming the file and the module when the library would compute something
    UWE cannot (another pooling, a projection, lower-casing, a default prompt, a similarity
    whose ranking differs from the UWE scorer's), so that no model loads as a different one."""
    from uwe.model.folder import read_json_object

    root = Path(root)
    modules_path = root / "modules.json"
    if not modules_path.is_file() and (root / "config.json").is_file():
        # a bare transformers folder: the library builds Transformer + mean Pooling
        return STFolder(root, root, "SentenceTransformer", "mean", _tokenizer_max_length(root))
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{modules_path}: not a readable JSON file "
                         f"({' '.join(str(err).split())})") from None
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise InputError(f"{modules_path}: expected a list of modules")
    classes = [_module_class(m) for m in modules]
    if not classes or classes[0] != "Transformer":
        raise InputError(f"{modules_path}: the first module is {classes[0] if classes else 'none'}"
                         f", not a Transformer: UWE loads transformer backbones only")
    transformer = root / str(modules[0].get("path", ""))
    st_path = root / "config_sentence_transformers.json"
    st_config = read_json_object(st_path) if st_path.is_file() else {}
    model_type = str(st_config.get("model_type") or "SentenceTransformer")
    prompts = st_config.get("prompts") or {}
    if not isinstance(prompts, dict):
        raise InputError(f"{st_path}: prompts must be an object, got {prompts!r}")
    prompts = {k: v for k, v in prompts.items() if v}
    if prompts:
        raise InputError(f"{st_path}: prompts {prompts!r} prefix the texts the library encodes "
                         f"(encode_query / encode_document), which UWE does not")
    legacy = [k for k in PYLATE_KEYS if k in st_config]
    if legacy or model_type == "ColBERT":
        raise InputError(f"{st_path}: a PyLate / ColBERT folder ({', '.join(legacy) or 'ColBERT'}"
                         f"): its query expansion, markers and projection have no UWE equivalent")
    bert_path = transformer / "sentence_bert_config.json"
    bert = read_json_object(bert_path) if bert_path.is_file() else {}
    if bert.get("do_lower_case"):
        raise InputError(f"{bert_path}: do_lower_case lower-cases every text, which UWE does not")
    knobs = [k for k in ("query_expansion", "query_length", "document_length")
             if bert.get(k) is not None]
    if knobs:
        raise InputError(f"{bert_path}: {', '.join(knobs)} pad or cut the token sequences the "
                         f"library scores, which UWE does not")
    max_length = bert.get("max_seq_length")
    if max_length is None:
        max_length = _tokenizer_max_length(transformer)
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise InputError(f"{bert_path}: bad max_seq_length {max_length!r} (a positive integer)")
    rest = list(zip(classes[1:], modules[1:], strict=True))
    similarity = st_config.get("similarity_fn_name")

    def refuse(i: int, why: str) -> InputError:
        return InputError(f"{modules_path}: module {i + 1} ({classes[i + 1]}) {why}; load this "
                          f"folder with sentence_transformers.{model_type}")

    if model_type == "SentenceTransformer":
        if not rest or rest[0][0] != "Pooling":
            raise InputError(f"{modules_path}: no Pooling module after the Transformer: not a "
                             f"sentence-embedding model UWE can load")
        pool_cfg_path = root / str(rest[0][1].get("path", "")) / "config.json"
        mode = _pooling_mode(read_json_object(pool_cfg_path))
        if mode not in ("mean", ["mean"], ("mean",)):
            raise refuse(0, f"pools with {mode!r}; UWE mean-pools")
        normalized = len(rest) > 1 and rest[1][0] == "Normalize"
        extra = rest[2:] if normalized else rest[1:]
        if extra:
            raise refuse(classes.index(extra[0][0]) - 1, "has no UWE equivalent")
        if similarity not in (None, "cosine") and not (normalized and similarity == "dot"):
            raise InputError(f"{st_path}: similarity_fn_name {similarity!r} ranks otherwise than "
                             f"the cosine UWE's mean scorer computes")
        scorer = "mean"
    elif model_type == "MultiVectorEncoder":
        unit = False
        for i, (cls, entry) in enumerate(rest):
            cfg_path = root / str(entry.get("path", "")) / "config.json"
            cfg = read_json_object(cfg_path) if cfg_path.is_file() else {}
            if cls == "MultiVectorMask":
                if cfg.get("skiplist_words") or cfg.get("keep_only_token_ids"):
                    raise refuse(i, "drops tokens from what is scored; UWE scores every token")
            elif cls == "Normalize":  # the library's default normalises sentence embeddings
                unit |= (cfg.get("module_input_name") == "token_embeddings"
                         and cfg.get("module_output_name", "token_embeddings")
                         == "token_embeddings")
            else:
                raise refuse(i, "has no UWE equivalent")
        if not unit:
            raise InputError(f"{modules_path}: the token embeddings are not normalised, so the "
                             f"library's MaxSim is over raw dot products and UWE's over cosines; "
                             f"a UWE token folder has its own uwe_config.json")
        if similarity not in (None, "maxsim", "meanmaxsim"):
            raise InputError(f"{st_path}: similarity_fn_name {similarity!r}: UWE scores token "
                             f"models with MaxSim only")
        scorer = "maxsim"
    else:
        raise InputError(f"{st_path}: model_type {model_type!r}: UWE loads SentenceTransformer "
                         f"and MultiVectorEncoder folders")
    return STFolder(root, transformer, model_type, scorer, int(max_length))


def _tokenizer_max_length(folder: Path) -> int:
    """The library's fallback when sentence_bert_config.json has no max_seq_length: the
    tokenizer's ``model_max_length`` within the backbone's positions."""
    from uwe.model.folder import read_json_object

    limits = []
    tok = folder / "tokenizer_config.json"
    if tok.is_file():
        value = read_json_object(tok).get("model_max_length")
        if isinstance(value, int) and 0 < value < 10**6:
            limits.append(value)
    cfg = folder / "config.json"
    if cfg.is_file():
        value = read_json_object(cfg).get("max_position_embeddings")
        if isinstance(value, int) and value > 0:
            limits.append(value)
    return min(limits, default=512)
