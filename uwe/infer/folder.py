"""A UWE model folder on disk, checked before anything is loaded from it (no torch import).

:func:`uwe.infer.model.save` writes the folder: the backbone (``config.json``,
``model.safetensors``),
the tokenizer (``tokenizer.json`` and ``tokenizer_config.json``) and ``uwe_config.json``.
:func:`check_model_folder` checks that it is whole and consistent, so that a damaged copy is
one line naming what is wrong (:class:`uwe.errors.InputError`) and not a model that loads and
ranks nonsense; :func:`uwe.infer.model.load` and :class:`uwe.infer.numpy_engine.NumpyUWE` call it
(``uwe info`` reads the configs through :func:`read_json_object`).
"""

from __future__ import annotations

import json
from pathlib import Path

from uwe.errors import InputError

UWE_CONFIG = "uwe_config.json"
WEIGHTS = "model.safetensors"
# what a UWE folder must hold (uwe.infer.model.save writes them); the tokenizer is tokenizer.json
# (a fast tokenizer) or vocab.txt (a WordPiece vocabulary)
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
    (:data:`UWE_CONFIG_KEYS`)."""
    path = Path(folder) / UWE_CONFIG
    config = read_json_object(path)
    missing = [k for k in UWE_CONFIG_KEYS if k not in config]
    if missing:
        raise InputError(f"{path}: missing key{'s' if len(missing) > 1 else ''} "
                         f"{', '.join(map(repr, missing))}; the folder was not written by "
                         f"uwe.infer.model.save")
    return config


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
