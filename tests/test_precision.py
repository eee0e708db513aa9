"""train.precision (uwe.precision): ``auto`` follows the CPU's bf16 flags, a bf16 step stays
within a stated tolerance of the fp32 step, and the precision used is recorded."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import run, tiny_cfg, write_tiny_curated

from uwe import precision as prec
from uwe.train import distributed, step
from uwe.train import loop as training

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_backbone):
    torch.set_num_threads(1)
    return tiny_backbone, write_tiny_curated(tmp_path_factory.mktemp("uwe_prec") / "curated")
NO_BF16 = {"cpu": "Old CPU", "capability": "AVX2", "amx_bf16": False, "avx512_bf16": False,
           "avx512_vnni": False, "avx512": False, "avx2": True}


@pytest.fixture
def fake_cpu(monkeypatch):
    """Make torch's CPU-feature probes report the given flags (and forget the cached read)."""
    def probe_returning(value: bool):
        return lambda: value

    def fake(**flags):
        for name, probe in prec._PROBES.items():
            monkeypatch.setattr(torch.cpu, probe, probe_returning(flags.get(name, False)))
        prec.cpu_isa.cache_clear()

    yield fake
    prec.cpu_isa.cache_clear()


@pytest.mark.parametrize(("flags", "expected"), [
    ({}, "fp32"),
    ({"avx2": True, "avx512": True, "avx512_vnni": True}, "fp32"),  # VNNI is int8, not bf16
    ({"avx512": True, "avx512_bf16": True}, "bf16"),
    ({"amx_bf16": True}, "bf16"),
])
def test_auto_follows_the_cpu_flags(fake_cpu, flags, expected):
    fake_cpu(**flags)
    isa = prec.cpu_isa()
    assert {k: isa[k] for k in prec._PROBES} == {k: flags.get(k, False) for k in prec._PROBES}
    assert prec.resolve_precision("auto", CPU) == expected
    # an explicit choice is kept whatever the CPU has
    assert prec.resolve_precision("fp32", CPU) == "fp32"
    assert prec.resolve_precision("bf16", CPU) == "bf16"


def test_an_unknown_precision_is_named():
    with pytest.raises(ValueError, match="'fp16'"):
        prec.resolve_precision("fp16", CPU, NO_BF16)


def test_auto_trains_in_fp32_on_a_cpu_without_bf16_and_records_it(setup, tmp_path, fake_cpu):
    backbone, root = setup
    fake_cpu(avx2=True)
    summary = run(tiny_cfg(backbone, steps=2, eval_every=2, precision="auto"), root, tmp_path)
    assert summary["precision"] == "fp32" and summary["device"] == "cpu"
    assert summary["cpu"]["capability"] and summary["cpu"]["avx512_bf16"] is False
    model_cfg = json.loads((tmp_path / "model" / "uwe_config.json").read_text())
    assert model_cfg["arithmetic"]["precision"] == "fp32"
    assert model_cfg["train"]["precision"] == "auto"  # what was asked, beside what was used
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"| arithmetic | fp32 on cpu ({summary['cpu']['cpu']}; no native bf16) |" in card

    fake_cpu(avx512_bf16=True)
    bf16 = run(tiny_cfg(backbone, steps=2, eval_every=2, precision="auto"), root,
               tmp_path / "b")
    assert bf16["precision"] == "bf16" and bf16["cpu"]["avx512_bf16"] is True


def _step_loss_and_grads(setup, tmp_path, precision: str, frozen_layers: int = 0):
    backbone, root = setup
    cfg = tiny_cfg(backbone, precision=precision, frozen_layers=frozen_layers,
                   frozen_cache_dir="")
    trainer = training.Trainer(cfg, 0, root, tmp_path / precision / "m",
                               tmp_path / precision / "c", distributed.DistInfo(), CPU, None,
                               False)
    assert trainer.precision == precision
    trainer.model.encoder.train()
    torch.manual_seed(0)  # dropout draws the same masks in both runs
    linear_out = set()  # dtypes of the trained layers' matrix products in the step
    hooks = [m.register_forward_hook(lambda _m, _i, out: linear_out.add(out.dtype))
             for m in trainer.model.encoder.modules() if isinstance(m, torch.nn.Linear)]
    scored = step.step_scores(trainer.encode, trainer.model, trainer.batcher,
                              trainer.batcher.sample(), distributed.DistInfo(), trainer.autocast,
                              token_lengths=trainer.token_lengths)
    assert all(s.dtype == torch.float32 for s, _ in scored.values())  # scores and loss in fp32
    for h in hooks:
        h.remove()
    assert linear_out == {torch.bfloat16 if precision == "bf16" else torch.float32}
    loss, _ = trainer.loss_fn(scored)
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in trainer.model.encoder.named_parameters()
             if p.grad is not None}
    masters = {p.dtype for p in trainer.model.encoder.parameters()}
    return float(loss.detach()), grads, masters


# bfloat16 keeps 8 bits of mantissa (relative rounding 2^-9 ~ 2e-3 per product). On the tiny
# random BERT the residual stream is dominated by the (float32) embeddings, so a bf16 step
# moved the loss by 5e-6 / 1e-5 relative and the gradient norm by 8e-5 / 3e-4, gradient cosine
# > 0.99998 (full / 1 frozen layer, measured on an AMD EPYC with AVX512-BF16): the tolerances
# below are 10-20x those (room for another CPU's accumulation order). The dtype checks catch
# a step whose products stay fp32 or whose scores leave fp32; the tolerances, a bf16 error
# beyond rounding.
LOSS_RTOL = 2e-4
GRAD_MIN_COSINE = 0.9995
GRAD_NORM_RTOL = 5e-3
MATRIX_MIN_COSINE = 0.999


@pytest.mark.parametrize("frozen_layers", [0, 1], ids=["full", "frozen-bottom"])
def test_a_bf16_step_stays_within_tolerance_of_the_fp32_step(setup, backbone_factory, tmp_path,
                                                             frozen_layers):
    if frozen_layers:  # the frozen-bottom path needs a backbone deeper than K
        setup = (backbone_factory(2), setup[1])
    loss32, g32, m32 = _step_loss_and_grads(setup, tmp_path, "fp32", frozen_layers)
    loss16, g16, m16 = _step_loss_and_grads(setup, tmp_path, "bf16", frozen_layers)
    assert m32 == m16 == {torch.float32}  # master weights stay float32
    assert loss16 == pytest.approx(loss32, rel=LOSS_RTOL)
    assert loss16 != loss32  # the autocast region really ran in bf16
    assert g32.keys() == g16.keys() and len(g32) > 5
    assert all(g.dtype == torch.float32 for g in g16.values())
    flat32 = torch.cat([g.flatten() for g in g32.values()])
    flat16 = torch.cat([g.flatten() for g in g16.values()])
    cos = torch.nn.functional.cosine_similarity(flat32, flat16, dim=0)
    assert float(cos) > GRAD_MIN_COSINE
    assert float(flat16.norm()) == pytest.approx(float(flat32.norm()), rel=GRAD_NORM_RTOL)
    for name in g32:  # every weight matrix of the trained layers, one by one
        if g32[name].ndim == 2 and g32[name].norm() > 0:
            c = torch.nn.functional.cosine_similarity(g32[name].flatten(), g16[name].flatten(),
                                                      dim=0)
            assert float(c) > MATRIX_MIN_COSINE, name
