"""A UWE model folder on disk, checked before anything is loaded from it (no torch import).

:func:`uwe.model.uwe_model.save` writes the folder: the backbone (``config.json``,
``model.safetensors``),
the tokenizer (``tokenizer.json`` and ``tokenizer_config.json``) and ``uwe_config.json``.
:func:`check_model_folder` checks that it is whole and consistent, so that a damaged copy is
one line naming what is wrong (:class:`uwe.errors.InputError`) and not a model that loads and
ranks nonsense; :func:`uwe.model.uwe_model.load` and :class:`uwe.infer.numpy_engine.NumpyUWE`
call it (``uwe info`` reads the configs through :func:`read_json_object`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path

from uwe.constants import SCORER_NAMES
from uwe.errors import InputError

UWE_CONFIG = "uwe_config.json"
WEIGHTS = "model.safetensors"
# what a UWE folder must hold (uwe.model.uwe_model.save writes them); the tokenizer is
# tokenizer.json (a fast tokenizer) or vocab.txt (a WordPiece vocabulary)
MODEL_FILES = (UWE_CONFIG, "config.json", WEIGHTS, "tokenizer_config.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
UWE_CONFIG_KEYS = ("scorer", "attention_temperature", "max_length")
# a tokenizer with fewer tokens than this share of the backbone's embedding rows is not the
# model's own (a folder without tokenizer.json loads as a tokenizer of its 5 special tokens)
MIN_TOKENIZER_SHARE = 0.9


def read_json_object(path: Path) -> dict:
    """The JSON object in ``path``; InputError naming the file if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable JSON file ({' '.join(str(err).split())})"
                         ) from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a JSON object, got a JSON {type(data).__name__}")
    return data


def read_uwe_config(folder: str | Path) -> dict:
    """``uwe_config.json`` of a UWE folder, checked to be an object with the keys a model needs
    (:data:`UWE_CONFIG_KEYS`) and values every engine can run (:func:`check_uwe_config`)."""
    path = Path(folder) / UWE_CONFIG
    config = read_json_object(path)
    missing = [k for k in UWE_CONFIG_KEYS if k not in config]
    if missing:
        raise InputError(f"{path}: missing key{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))}; the folder was not written by "
                         f"uwe.model.uwe_model.save")
    backbone = Path(folder) / "config.json"
    check_uwe_config(config, path, read_json_object(backbone) if backbone.is_file() else None)
    return config


#: backbones whose positions start after the padding index (RoBERTa / MPNet family)
OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet")


def max_positions(backbone: Mapping) -> int | None:
    """How many tokens the backbone of ``config.json`` ``backbone`` can embed (None: unknown)."""
    n = backbone.get("max_position_embeddings")
    if isinstance(n, bool) or not isinstance(n, int):
        return None
    if backbone.get("model_type") in OFFSET_POSITIONS:
        n -= int(backbone.get("pad_token_id") or 0) + 1
    return n


def check_uwe_config(config: Mapping, path: str | Path, backbone: Mapping | None = None) -> None:
    """One validator of ``uwe_config.json`` for every engine (torch, ONNX, NumPy): InputError
    naming the file, key and value unless the scorer is known, the attention temperature a
    finite number > 0, the max length an integer from 2 to what the backbone embeds
    (``backbone`` = its ``config.json``) and ``pooler`` a boolean."""
    def bad(key: str, want: str) -> InputError:
        return InputError(f"{path}: bad {key!r} {config.get(key)!r} ({want})")

    scorer = config.get("scorer")
    if not isinstance(scorer, str) or scorer not in SCORER_NAMES:
        raise bad("scorer", f"one of {', '.join(SCORER_NAMES)}")
    tau = config.get("attention_temperature")
    if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau) \
            or tau <= 0:
        raise bad("attention_temperature", "a finite number > 0")
    length = config.get("max_length")
    limit = max_positions(backbone or {})
    if isinstance(length, bool) or not isinstance(length, int) or length < 2 or (
            limit is not None and length > limit):
        upto = f" to {limit}, the backbone's positions" if limit is not None else " or more"
        raise bad("max_length", f"an integer from 2{upto}")
    if "pooler" in config and not isinstance(config["pooler"], bool):
        raise bad("pooler", "true or false")


def check_model_folder(folder: str | Path, tokenizer_size: bool = True) -> dict:
    """Validate a UWE folder before anything is loaded from it: the files of
    :data:`MODEL_FILES` and a tokenizer (:data:`TOKENIZER_FILES`) present, the configs
    readable, the tokenizer's size against the backbone's vocabulary
    (:func:`check_tokenizer_size`; ``tokenizer_size=False`` leaves that to a caller that loads
    the tokenizer anyway). Returns ``uwe_config.json``; otherwise FileNotFoundError (a missing
    folder or file) or InputError, one line naming what is missing or wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"UWE model folder not found: {folder}")
    missing = [name for name in MODEL_FILES if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append(" or ".join(TOKENIZER_FILES))
    if missing:
        raise FileNotFoundError(f"UWE model folder {folder} is incomplete: missing "
                         f"{', '.join(missing)}; copy the whole folder or train it again")
    config = read_uwe_config(folder)
    backbone = read_json_object(folder / "config.json")
    vocab = backbone.get("vocab_size")
    if not tokenizer_size:
        return config
    if (folder / "tokenizer.json").is_file():
        size = tokenizer_json_size(folder / "tokenizer.json")
    else:
        size = sum(1 for _ in (folder / "vocab.txt").open(encoding="utf-8"))
    if isinstance(vocab, int):
        check_tokenizer_size(size, vocab, folder)
    return config


def tokenizer_json_size(path: Path) -> int:
    """Number of token ids of a ``tokenizer.json`` (its model's vocabulary and added tokens)."""
    data = read_json_object(path)
    vocab = (data.get("model") or {}).get("vocab")
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab or [])))
    ids += [t.get("id", -1) for t in data.get("added_tokens") or [] if isinstance(t, dict)]
    return max((int(i) for i in ids), default=-1) + 1


def check_tokenizer_size(n_tokens: int, vocab_size: int, folder: str | Path) -> None:
    """InputError unless a tokenizer of ``n_tokens`` ids fits the backbone's ``vocab_size``
    embedding rows: more ids would index past the table, far fewer means the tokenizer is not
    the model's (:data:`MIN_TOKENIZER_SHARE`)."""
    if n_tokens > vocab_size:
        raise InputError(f"{folder}: the tokenizer has {n_tokens} tokens but the backbone only "
                         f"{vocab_size} embedding rows (config.json vocab_size): they do not "
                         f"belong together")
    if n_tokens < MIN_TOKENIZER_SHARE * vocab_size:
        raise InputError(f"{folder}: the tokenizer has {n_tokens} tokens for a backbone of "
                         f"{vocab_size}: it is not the model's tokenizer (tokenizer.json "
                         f"missing or replaced?); copy the folder's tokenizer files again")


def find_uwe_folder(spec: str, root: str | Path = ".") -> Path | None:
    """The UWE model folder ``spec`` names (absolute, or relative to ``root``), else None."""
    for candidate in (Path(spec), Path(root) / spec):
        if (candidate / UWE_CONFIG).is_file():
            return candidate
    return None


def find_st_folder(spec: str, root: str | Path = ".") -> Path | None:
    """The sentence-transformers folder (``modules.json``, no ``uwe_config.json``) ``spec``
    names (absolute, or relative to ``root``), else None."""
    for candidate in (Path(spec).expanduser(), Path(root) / spec):
        if (candidate / "modules.json").is_file() and not (candidate / UWE_CONFIG).is_file():
            return candidate
    return None


# ------------------------------------------------------------------------------ weights
#: tensors a backbone may have or lack without changing UWE's outputs (the [CLS] pooler head,
#: which UWE never runs; folders differ in whether they kept it)
OPTIONAL_TENSORS = ("pooler.",)


def safetensors_header(path: str | Path) -> tuple[dict[str, dict], dict, int]:
    """``(entries, metadata, data_start)`` of a ``.safetensors`` file from its header alone:
    ``entries[name] = {"dtype", "shape", "data_offsets"}``. ValueError naming the file when the
    header is malformed or does not fit the file (truncated)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError(f"{path}: not a safetensors file (too short)")
        (n,) = struct.unpack("<Q", head)
        if n > size - 8:
            raise ValueError(f"{path}: header length {n} exceeds the file size {size}")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: bad safetensors header: {err}") from err
    if not isinstance(header, dict):
        raise ValueError(f"{path}: bad safetensors header")
    meta = header.pop("__metadata__", None) or {}
    for name, info in header.items():
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise ValueError(f"{path}: bad entry {name!r} in the header")
    return header, meta, 8 + n


def tensor_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor of a ``.safetensors`` file (header only)."""
    entries, _, _ = safetensors_header(path)
    try:
        return {name: tuple(int(s) for s in info["shape"]) for name, info in entries.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: bad tensor shape in the header: {err}") from err


def check_tensors(weights: str | Path, shapes: Mapping[str, tuple[int, ...]],
                  expected: Mapping[str, tuple[int, ...]], config: str | Path,
                  optional: tuple[str, ...] = OPTIONAL_TENSORS) -> None:
    """InputError, one line naming the tensor, unless the tensors of ``weights`` (``shapes``)
    are exactly those the backbone of ``config`` has (``expected``), shapes included; tensors
    under an ``optional`` prefix may be present or absent. Libraries fill a missing tensor with
    random values and skip an unexpected one, which ranks with a different model, silently."""
    weights, config = Path(weights), Path(config)

    def required(name: str) -> bool:
        return not name.startswith(optional)

    missing = [k for k in expected if k not in shapes and required(k)]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise InputError(f"{weights}: tensor {missing[0]!r}{more} is missing: the file does not "
                         f"hold the weights {config.name} describes (damaged or replaced); copy "
                         f"or train the model again")
    unexpected = [k for k in shapes if k not in expected and required(k)]
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        raise InputError(f"{weights}: unexpected tensor {unexpected[0]!r}{more}, which the "
                         f"backbone of {config.name} does not have: the weights belong to "
                         f"another model")
    for name, shape in expected.items():
        if name in shapes and tuple(shapes[name]) != tuple(shape):
            raise InputError(f"{config}: disagrees with {weights.name}: tensor {name!r} has shape "
                             f"{list(shapes[name])} in the weights, {list(shape)} by "
                             f"{config.name}")


def model_files_stamp(folder: str | Path) -> dict[str, list[int]]:
    """``{file: [size, mtime_ns]}`` of the configs and weights of a model folder, its module
    sub-folders included (a sentence-transformers folder keeps its Transformer, Pooling, ...
    there): what a cache keyed by the folder must notice changing."""
    folder = Path(folder)
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and (path.suffix in (".json", ".safetensors", ".bin", ".txt")
                               and path.name != "README.md"):
            st = path.stat()
            out[str(path.relative_to(folder))] = [st.st_size, st.st_mtime_ns]
    return {"files": out}
