"""Benchmark the SLI scoring kernels on realistic token shapes (random unit-scale data).

Compares, for ``--queries`` queries of ``--q-len`` tokens against a target space with the
token-length histogram of ESCO skill labels under MiniLM's tokenizer (13,939 targets, 3-16
tokens, hidden size 384, token norms ~8-13 as in MiniLM's last layer):

* ``padded``: :func:`uwe.core.scoring.sli_scores` over length-sorted target batches of 128 padded to
  their longest text (the general masked scorer);
* ``dense``: :func:`uwe.infer.dense.sli_dense` over equal-length target groups with the
  elementwise part as tensor operations (the GPU path);
* ``fused``: the same with the one-pass Numba kernel :func:`uwe.infer.kernels.sli_from_cos`
(compiled
  before timing), one ``sli_dense`` call per target chunk;
* ``blocks``: every target chunk in one :func:`uwe.infer.dense.sli_dense_blocks` call, the chunks
  run side by side on one thread each (the CPU serving path of
  :class:`uwe.model.uwe_model.UWEModel`);
* ``matmul``: the cosine matrix products alone, the floor of any exact dense kernel;
  ``matmul_np``: the same products through NumPy's BLAS (OpenBLAS in its wheels) instead of
  torch's (MKL), which can differ a lot by CPU vendor.

Prints seconds, token-pair elements per second and the max abs difference to ``padded``.
Usage: ``python scripts/bench_sli.py [--queries 512] [--threads 2]``
"""

from __future__ import annotations

import argparse
import time

import torch

from uwe.core.scoring import sli_scores, unit_and_norm
from uwe.infer.dense import sli_dense, sli_dense_blocks
from uwe.infer.kernels import available

# ESCO v1.2.0 skill preferred labels, tokens per label (MiniLM tokenizer, specials included)
LENGTH_HISTOGRAM = {16: 3, 15: 8, 14: 20, 13: 38, 12: 73, 11: 169, 10: 414, 9: 719, 8: 1241,
                    7: 2141, 6: 3003, 5: 3966, 4: 1962, 3: 182}


def make_targets(d: int, seed: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, length, d, generator=g) * (10.0 / d**0.5)
            for length, n in sorted(LENGTH_HISTOGRAM.items())]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--queries", type=int, default=512)
    ap.add_argument("--q-len", type=int, default=7)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tau", type=float, default=0.1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    groups = make_targets(args.dim, 0)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(args.queries, args.q_len, args.dim, generator=g) * (10.0 / args.dim**0.5)
    q_mask = torch.ones(args.queries, args.q_len, dtype=torch.bool)
    n_tokens = sum(t.shape[0] * t.shape[1] for t in groups)
    elements = args.queries * args.q_len * n_tokens

    # padded: batches of 128 length-sorted targets, padded to their longest text
    flat = [t[i] for t in reversed(groups) for i in range(t.shape[0])]
    padded_batches = []
    for s in range(0, len(flat), 128):
        chunk = flat[s : s + 128]
        length = max(x.shape[0] for x in chunk)
        emb = torch.zeros(len(chunk), length, args.dim)
        mask = torch.zeros(len(chunk), length, dtype=torch.bool)
        for i, x in enumerate(chunk):
            emb[i, : x.shape[0]], mask[i, : x.shape[0]] = x, True
        padded_batches.append((emb, mask))

    def padded():
        return torch.cat([sli_scores(q, q_mask, e, m, args.tau, target_chunk=max(
            1, 2**21 // (args.queries * args.q_len * e.shape[1]))) for e, m in padded_batches], 1)

    qu, qn = unit_and_norm(q)
    units = [unit_and_norm(t) for t in reversed(groups)]

    def dense(fused: bool = False):
        out = []
        for tu, tn in units:
            step = max(1, 2**22 // (args.queries * args.q_len * tu.shape[1]))
            out += [sli_dense(qu, qn, tu[j : j + step], tn[j : j + step], args.tau, fused=fused)
                    for j in range(0, tu.shape[0], step)]
        return torch.cat(out, 1)

    def blocks():
        chunks = []
        for tu, tn in units:
            step = max(1, 2**22 // (args.queries * args.q_len * tu.shape[1]))
            chunks += [(tu[j : j + step], tn[j : j + step]) for j in range(0, tu.shape[0], step)]
        return torch.cat(sli_dense_blocks(qu, qn, chunks, args.tau), 1)

    def matmul(numpy: bool = False):
        q2 = qu.reshape(-1, args.dim)
        q2n = q2.numpy()
        for tu, _ in units:
            t2 = tu.reshape(-1, args.dim)
            step = max(1, 2**22 // (args.queries * args.q_len))
            for j in range(0, t2.shape[0], step):
                if numpy:  # NumPy's BLAS (OpenBLAS in its wheels) instead of torch's (MKL)
                    q2n @ t2[j : j + step].numpy().T
                else:
                    q2 @ t2[j : j + step].T
        return None

    runs = [("padded", padded), ("dense", dense), ("matmul", matmul),
            ("matmul_np", lambda: matmul(numpy=True))]
    if available():
        sli_dense(qu[:1], qn[:1], units[0][0][:2], units[0][1][:2], args.tau, fused=True)  # jit
        runs[3:3] = [("fused", lambda: dense(fused=True)), ("blocks", blocks)]

    print(f"{args.queries} queries x {args.q_len} tokens vs {len(flat)} targets "
          f"({n_tokens} tokens), d={args.dim}, {args.threads} thread(s)")
    ref = None
    for name, fn in runs:
        with torch.inference_mode():
            t0 = time.perf_counter()
            scores = fn()
            dt = time.perf_counter() - t0
        ref = scores if ref is None else ref
        diff = "" if scores is None else (
            f"  max |diff| vs padded {float((scores - ref).abs().max()):.1e}")
        print(f"{name:9s} {dt:7.2f} s  {elements / dt / 1e9:6.3f} G token pairs/s{diff}")


if __name__ == "__main__":
    main()
