"""Load a UWE model folder with sentence-transformers and compare with uwe's own scores.

    python scripts/check_st_load.py models/uwe [--as-scorer sli] [--out /tmp/uwe-st]

The folder is loaded with ``uwe.load`` and written again with ``uwe.model.uwe_model.save`` (which
adds the sentence-transformers files) into ``--out``; that copy is then loaded with the class
its model card names (``SentenceTransformer`` for mean pooling, ``MultiVectorEncoder``
otherwise, scored with ``uwe.sli_similarity``), and both score the same queries and targets,
a text longer than the model's max length included. Prints the largest absolute score
difference and exits 1 above ``--atol`` (default 1e-5). ``--as-scorer`` re-saves the same
weights with another scorer (e.g. a mean-pooled model's weights as SLI, to check the token
path on trained weights).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

QUERIES = ["data scientist", "python programming", "care for patients in a hospital ward"]
TARGETS = ["machine learning", "bake bread", "nursing care", "manage a team of developers",
           " ".join(["statistics and data analysis"] * 40)]  # beyond any max length here


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--as-scorer", default=None)
    parser.add_argument("--attention-temperature", type=float, default=None,
                        help="with --as-scorer: its tau_a (default: the folder's)")
    parser.add_argument("--out", default=None)
    parser.add_argument("--atol", type=float, default=1e-5)
    args = parser.parse_args(argv)

    import numpy as np
    import sentence_transformers as st
    import torch

    import uwe
    from uwe.model.st_folder import library_class
    from uwe.model.uwe_model import UWEModel, save

    torch.manual_seed(0)
    model = uwe.load(args.folder, device="cpu")
    if args.as_scorer:
        tau = args.attention_temperature or model.attention_temperature
        model = UWEModel(model.encoder, args.as_scorer, tau,
                         config={**model.config, "scorer": args.as_scorer,
                                 "attention_temperature": tau})
    out = Path(args.out or tempfile.mkdtemp(prefix="uwe-st-")) / Path(args.folder).name
    save(model, out, extra_config=model.config)
    cls = library_class(model.scorer_name)
    lib = getattr(st, cls)(str(out), device="cpu")
    want = model.score(QUERIES, TARGETS)
    if cls == "SentenceTransformer":
        q = lib.encode(QUERIES, convert_to_tensor=True)
        t = lib.encode(TARGETS, convert_to_tensor=True)
        got = lib.similarity(q, t).numpy()
    else:
        from uwe.core.scoring import ATTENTION_UNIT

        got = uwe.sli_similarity(lib.encode(QUERIES), lib.encode(TARGETS),
                                 model.attention_temperature,
                                 ATTENTION_UNIT.get(model.scorer_name, "raw")).numpy()
    diff = float(np.abs(got - want).max())
    print(f"{args.folder} as {model.scorer_name} (tau_a {model.attention_temperature:g}, "
          f"max length {model.encoder.max_length}): sentence_transformers.{cls}"
          f"('{out}') max_seq_length {lib.max_seq_length}; largest |score difference| vs "
          f"uwe over {want.size} pairs: {diff:.2e}")
    return 0 if diff <= args.atol else 1


if __name__ == "__main__":
    sys.exit(main())
