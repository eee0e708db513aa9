"""What a model folder is, in words: the model card (``README.md``) that
:func:`uwe.model.uwe_model.save` writes into every folder, and ``uwe info``'s summary
(:func:`describe_model`).

As a sentence-transformers model on the Hugging Face hub carries one, a UWE folder says what it
is without the code: a YAML header (``library_name``, ``base_model``, ``tags``), the
architecture (backbone, scorer, attention temperature, max length), the training data (graphs,
their edges, temperatures and weights) and budget (steps, batch size, pairs seen per graph, the
frozen-bottom layers, loss, learning rate, seed), the validation MAP per heldout task when the
run validated, and how to use it. Everything comes from the folder's ``uwe_config.json``, so the
card never disagrees with the weights it describes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from uwe.errors import CLIError

CARD_FILE = "README.md"

BACKBONE_IDS = {"all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
                "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2"}


def _pct(value: Any) -> str:
    return f"{100 * float(value):.2f}" if isinstance(value, int | float) else "-"


def model_card(config: dict[str, Any], name: str = "UWE model") -> str:
    """Markdown text of the card of a folder whose ``uwe_config.json`` is ``config``."""
    backbone = str(config.get("backbone", "?"))
    train = config.get("train") or {}
    graphs = config.get("graphs") or {}
    edges = (config.get("data") or {}).get("graph_edges") or {}
    val = config.get("val") or {}
    lines = [
        "---",
        "library_name: uwe",
        f"base_model: {BACKBONE_IDS.get(backbone, backbone)}",
        "pipeline_tag: sentence-similarity",
        "tags: [uwe, late-interaction, job-titles, skills, esco, workbench]",
        "---",
        "",
        f"# {name}",
        "",
        "A Unified Work Embeddings (UWE) bi-encoder for the work domain: job titles, skills and "
        "job-ad sentences in one space, trained with a bidirectional many-to-many InfoNCE over "
        "bipartite graphs (arXiv 2511.07969).",
        "",
        "## Architecture",
        "",
        "| | |",
        "|---|---|",
        f"| backbone | `{backbone}` |",
        f"| scorer | `{config.get('scorer', '?')}` |",
        f"| attention temperature | {config.get('attention_temperature', '-')} |",
        f"| max length (tokens) | {config.get('max_length', '-')} |",
        f"| uwe version | {config.get('uwe_version', '-')} |",
    ]
    if train:
        steps = config.get("step", train.get("steps"))
        batch = train.get("batch_size")
        pairs = steps * batch if isinstance(steps, int) and isinstance(batch, int) else None
        lines += [
            "",
            "## Training",
            "",
            "| | |",
            "|---|---|",
            f"| loss | `{train.get('loss', '-')}` |",
            f"| steps | {steps} |",
            f"| batch size per graph | {batch} |",
            f"| pairs seen per graph | {pairs if pairs is not None else '-'} |",
            f"| frozen bottom layers | {train.get('frozen_layers', 0)} |",
            f"| learning rate / warm-up | {train.get('lr', '-')} / {train.get('warmup', '-')} |",
            f"| seed / processes | {config.get('seed', '-')} / {config.get('world_size', 1)} |",
            f"| arithmetic | {_arithmetic(config) or '-'} |",
        ]
    if graphs:
        lines += ["", "Training graphs:", "", "| graph | edges | temperature | weight |",
                  "|---|---:|---:|---:|"]
        for g, spec in sorted(graphs.items()):
            spec = spec or {}
            lines.append(f"| {g} | {edges.get(g, '-')} | {spec.get('temperature', '-')} | "
                         f"{spec.get('weight', '-')} |")
    if val.get("tasks"):
        cap = val.get("max_queries")
        lines += ["", "## Validation", "",
                  "MAP (%) on the heldout validation splits"
                  + (f" (at most {cap} queries per task)" if cap else "")
                  + f", at the kept step; macro **{_pct(val.get('macro_map'))}**. Test-split "
                  "results are the `evaluate` stage's (`metrics/workbench/`).", "",
                  "| task | MAP |", "|---|---:|"]
        lines += [f"| {t} | {_pct(v)} |" for t, v in sorted(val["tasks"].items())]
    lines += [
        "",
        "## Use",
        "",
        "```bash",
        'uwe rank --model <this folder> --task job2skill "data scientist"',
        "```",
        "",
        "```python",
        "import uwe",
        "",
        "model = uwe.load('<this folder>')",
        "scores = model.score(['data scientist'], ['python', 'bake bread'])",
        "```",
        "",
        *_library_use(config),
    ]
    return "\n".join(lines)


def _library_use(config: dict[str, Any]) -> list[str]:
    """The card's sentence-transformers section: which class loads the folder, five lines."""
    from uwe.model.st_folder import library_class

    scorer = str(config.get("scorer", "sli"))
    cls = library_class(scorer)
    head = ["The folder is also a sentence-transformers folder, loaded by "
            f"`{cls}` (with UWE's max length, {config.get('max_length', '-')} tokens):", "",
            "```python"]
    if cls == "SentenceTransformer":
        body = ["from sentence_transformers import SentenceTransformer",
                "",
                "model = SentenceTransformer('<this folder>')  # mean pooling + L2 normalisation",
                "q, t = model.encode(['data scientist']), model.encode(['python', 'bake bread'])",
                "scores = model.similarity(q, t)  # cosine: UWE's score"]
    else:
        attention = "cosine" if scorer == "sli_cos" else "raw"
        body = ["import uwe",
                "from sentence_transformers import MultiVectorEncoder",
                "",
                "model = MultiVectorEncoder('<this folder>')  # raw token embeddings, unprojected",
                "q, t = model.encode(['data scientist']), model.encode(['python', 'bake bread'])",
                f"scores = uwe.sli_similarity(q, t, {config.get('attention_temperature')}, "
                f"'{attention}')  # UWE's score"]
        if scorer not in ("sli", "sli_cos"):
            body.append(f"# this model scores with `{scorer}`: uwe.load('<this folder>') does")
    return [*head, *body, "```", ""]


def count_params(weights: Path) -> int:
    """Number of parameters in a safetensors file, from its header (no tensor is read)."""
    import numpy as np
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="np") as f:
            n = int(sum(np.prod(f.get_slice(k).get_shape(), dtype=np.int64) for k in f.keys()))
    except Exception as err:  # safetensors raises its own SafetensorError (not an OSError)
        raise CLIError(
            f"{weights}: not a readable safetensors file ({' '.join(str(err).split())}): the "
            f"weights are truncated or damaged; copy or train the model again"
        ) from err
    return n


def _arithmetic(config: dict[str, Any]) -> str | None:
    """"bf16 on cpu (AMD EPYC; avx512_bf16, avx512_vnni)": the precision the run used and,
    on a CPU, its model and bf16-relevant features (``uwe.precision``); None when the folder
    predates the record."""
    arith = config.get("arithmetic")
    if not isinstance(arith, dict) or not arith.get("precision"):
        return None
    cpu = arith.get("cpu") or {}
    flags = [k for k in ("amx_bf16", "avx512_bf16", "avx512_vnni") if cpu.get(k)]
    return f"{arith['precision']} on {arith.get('device', '?')}" + (
        f" ({cpu.get('cpu', '?')}; {', '.join(flags) or 'no native bf16'})" if cpu else "")


def _fmt(d: Any, keys: tuple[str, ...] | None = None) -> str:
    if not isinstance(d, dict):
        return str(d)
    items = [(k, d[k]) for k in (keys or tuple(d)) if k in d and not isinstance(d[k], dict)]
    return ", ".join(f"{k} {v}" for k, v in items) or "-"


def describe_model(path: str | Path) -> dict[str, Any]:
    """``{"summary": {label: text}, "config": uwe_config, "params": n}`` of a UWE folder."""
    folder = Path(path)
    config_path = folder / "uwe_config.json"
    if not config_path.is_file():
        raise CLIError(f"not a UWE model folder (no uwe_config.json): {folder}")
    from uwe.model.folder import read_json_object

    cfg = read_json_object(config_path)
    weights = folder / "model.safetensors"
    n_params = count_params(weights) if weights.is_file() else None
    train = cfg.get("train") or {}
    data = cfg.get("data") or {}
    graphs = cfg.get("graphs") or train.get("graphs") or {}
    summary = {
        "model": str(folder.resolve()),
        "backbone": cfg.get("backbone", "?"),
        "scorer": cfg.get("scorer", "?"),
        "attention temperature": cfg.get("attention_temperature", "?"),
        "max length": f"{cfg.get('max_length', '?')} tokens",
        "params": (
            f"{n_params:,} ({n_params / 1e6:.1f}M)"
            if n_params is not None
            else "? (model.safetensors missing)"
        ),
        "uwe version": f"{cfg.get('uwe_version', '?')} (format {cfg.get('format_version', '?')})",
    }
    if train:
        summary["training"] = _fmt(
            train,
            (
                "loss",
                "steps",
                "batch_size",
                "lr",
                "warmup",
                "weight_decay",
                "max_minutes",
                "precision",
            ),
        )
        summary["trained"] = _fmt(cfg, ("step", "seed", "world_size"))
        summary["graphs"] = ", ".join(f"{g} ({_fmt(p)})" for g, p in graphs.items()) or "-"
    else:
        summary["training"] = "none recorded (an untuned backbone?)"
    if data:
        edges = data.get("graph_edges") or {}
        summary["training data"] = f"{data.get('root', '?')}; edges: " + (
            ", ".join(f"{g} {n:,}" for g, n in edges.items()) or "-"
        )
    if _arithmetic(cfg):
        summary["arithmetic"] = _arithmetic(cfg)
    val = cfg.get("val")
    if isinstance(val, dict) and val.get("macro_map") is not None:
        summary["validation"] = f"macro MAP {100 * float(val['macro_map']):.2f} (best checkpoint)"
    return {"summary": summary, "config": cfg, "params": n_params}
