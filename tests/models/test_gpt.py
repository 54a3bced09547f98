"""GPT's loss: with labels it comes from the chunked head (`flurka.ops.loss`) and equals the loss over the
full logits (`fused_loss=False`), value and every parameter's gradient, fp32 and bf16 autocast."""

from __future__ import annotations

import pytest
import torch

from flurka.models.gpt import GPT
from flurka.ops.testing import rel_err


def _model(fused: bool) -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=97, max_len=32, n_layers=2, n_heads=2, d_model=32, attention="full", fused_loss=fused)


@pytest.mark.parametrize("autocast", [False, True])
def test_the_fused_loss_is_the_full_logits_loss(autocast):
    ids = torch.randint(97, (3, 17), generator=torch.Generator().manual_seed(1))
    labels = ids.roll(-1, 1)
    labels[:, -1] = -100  # the last position has no next token: not counted
    results = []
    for fused in (True, False):
        model = _model(fused)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            out = model(ids, labels=labels)
        out["loss"].backward()
        assert ("logits" in out) is not fused  # the fused path never forms the [B, N, V] logits
        results.append((out["loss"].detach(), {n: p.grad for n, p in model.named_parameters()}))
    (loss, grads), (want_loss, want_grads) = results
    tol = 1e-2 if autocast else 1e-5  # bf16: the two round the same products in a different order
    assert rel_err(loss, want_loss) < tol
    assert grads.keys() == want_grads.keys()
    # against each gradient's norm, or the typical norm for one that is zero up to rounding (the key bias's:
    # softmax is invariant to the shift q·b_k it adds to a query's every score)
    typical = torch.stack([g.norm() for g in want_grads.values()]).median()
    for name in grads:
        diff = (grads[name] - want_grads[name]).norm()
        assert diff <= tol * max(want_grads[name].norm(), typical), name


def test_without_labels_the_logits_come_back():
    out = _model(True)(torch.randint(97, (2, 5)))
    assert set(out) == {"logits"} and out["logits"].shape == (2, 5, 97)
