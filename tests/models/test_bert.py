"""BERT: every non-causal variant trains at tiny size, heads compute the losses they claim, padding is inert."""

from __future__ import annotations

import pytest
import torch

from flurka.attention import variants_supporting
from flurka.models.bert import BERT
from tests.attention.conftest import SMALL_OPTIONS

ENCODER_VARIANTS = ["full", "linformer", "performer", "linear", "eva", "flurka_performer", "flurka_rnn", "flurka_eva"]
TINY = dict(vocab_size=30, max_len=16, n_layers=2, n_heads=2, d_model=16)


def spec(name: str) -> dict:
    return {"name": name, **SMALL_OPTIONS.get(name, {}), "backend": "torch"}


def batch(b: int = 2, n: int = 12):
    ids = torch.randint(3, 30, (b, n))
    mask = torch.ones(b, n, dtype=torch.bool)
    mask[0, n - 4 :] = False
    return ids, mask


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("name", ENCODER_VARIANTS)
def test_mlm_forward_backward_every_variant(name, norm):
    model = BERT(**TINY, attention=spec(name), norm=norm)
    ids, mask = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids, padding_mask=mask, token_type_ids=torch.randint(0, 2, ids.shape), labels=labels)
    assert out["logits"].shape == (2, 12, 30)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert torch.isfinite(model.blocks[0].attn.q_proj.weight.grad).all()
    assert model.blocks[0].attn.q_proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["full", "flurka_performer"])
@pytest.mark.parametrize("head", ["classification", "regression"])
def test_sequence_heads_forward_backward(head, name):
    model = BERT(**TINY, attention=spec(name), head=head, num_labels=3, dropout=0.1)
    ids, mask = batch(3)
    labels = torch.randn(3) if head == "regression" else torch.tensor([0, 2, 1])
    out = model(ids, padding_mask=mask, labels=labels)
    assert out["logits"].shape == ((3, 1) if head == "regression" else (3, 3))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and model.classifier.weight.grad.abs().sum() > 0


def test_losses_are_the_textbook_ones():
    ids, mask = batch()
    mlm = BERT(**TINY).eval()
    labels = torch.full_like(ids, -100)
    labels[0, 1], labels[1, 5], labels[1, 7] = 4, 9, 11
    out = mlm(ids, padding_mask=mask, labels=labels)
    logp = out["logits"].log_softmax(-1)
    expected = -(logp[0, 1, 4] + logp[1, 5, 9] + logp[1, 7, 11]) / 3  # mean over the labelled positions only
    torch.testing.assert_close(out["loss"], expected)
    assert mlm.mlm_head.weight is mlm.tok_emb.weight  # tied

    reg = BERT(**TINY, head="regression").eval()
    target = torch.tensor([0.5, -1.0])
    out = reg(ids, padding_mask=mask, labels=target)
    torch.testing.assert_close(out["loss"], ((out["logits"][:, 0] - target) ** 2).mean())


@pytest.mark.parametrize("norm", ["pre", "post"])
@pytest.mark.parametrize("name", ["full", "linformer", "performer", "linear", "eva", "flurka_performer", "flurka_rnn"])
def test_padding_does_not_change_real_tokens(name, norm):
    """The same 7 real tokens, alone or followed by 5 padding tokens of any value: the same outputs (fp64). FLuRKA-EVA
    is left out by design: it maps the N queries proportionally onto chunks of its d_k downsampled keys, so with 7
    tokens and with 12 (7 + 5 padding) a query falls in different local windows."""
    model = BERT(**TINY, attention=spec(name), norm=norm, head="mlm").double().eval()
    ids = torch.randint(3, 30, (2, 7))
    padded = torch.cat([ids, torch.randint(0, 30, (2, 5))], dim=1)
    mask = torch.zeros(2, 12, dtype=torch.bool)
    mask[:, :7] = True
    with torch.no_grad():
        torch.manual_seed(1)
        alone = model(ids)["logits"]
        torch.manual_seed(1)
        with_pad = model(padded, padding_mask=mask)["logits"][:, :7]
    torch.testing.assert_close(with_pad, alone, rtol=1e-9, atol=1e-9)


def test_padding_mask_actually_reaches_attention():
    """Without the mask the padding tokens do change the real ones, so the test above is not vacuous."""
    model = BERT(**TINY).eval()
    ids = torch.randint(3, 30, (1, 7))
    padded = torch.cat([ids, torch.randint(3, 30, (1, 5))], dim=1)
    assert not torch.allclose(model(padded)["logits"][:, :7], model(ids)["logits"], atol=1e-4)


def test_classifier_ignores_padding():
    model = BERT(**TINY, head="classification", num_labels=3).eval()
    ids = torch.randint(3, 30, (2, 6))
    padded = torch.cat([ids, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    mask = torch.arange(10)[None].expand(2, -1) < 6
    torch.testing.assert_close(model(padded, padding_mask=mask)["logits"], model(ids)["logits"], rtol=1e-5, atol=1e-6)


def test_segments_matter_and_default_to_zero():
    model = BERT(**TINY).eval()
    ids = torch.randint(3, 30, (1, 8))
    zeros = torch.zeros_like(ids)
    torch.testing.assert_close(model(ids)["logits"], model(ids, token_type_ids=zeros)["logits"])
    assert not torch.allclose(model(ids)["logits"], model(ids, token_type_ids=torch.ones_like(ids))["logits"])


def test_refusals_name_what_would_work():
    with pytest.raises(ValueError, match="causal only; non-causal variants: .*flurka_eva") as err:
        BERT(**TINY, attention="lightning")
    assert "lightning" not in str(err.value).split("non-causal variants:")[1]
    with pytest.raises(ValueError, match="unknown BERT head 'ner'; valid: mlm, classification, regression"):
        BERT(**TINY, head="ner")
    with pytest.raises(ValueError, match="unknown positional 'sinusoidal'; valid: learned, rope, alibi, none"):
        BERT(**TINY, positional="sinusoidal")
    with pytest.raises(ValueError, match="cannot use RoPE"):
        BERT(**TINY, positional="rope", attention="flurka_rnn")
    assert BERT(**TINY, positional="rope").pos_emb is None
    model = BERT(**TINY, type_vocab_size=0)
    with pytest.raises(ValueError, match="type_vocab_size=0"):
        model(torch.zeros(1, 4, dtype=torch.long), token_type_ids=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="longer than the model's max_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="padding_mask must be a bool tensor"):
        BERT(**TINY)(torch.zeros(1, 4, dtype=torch.long), padding_mask=torch.ones(1, 4))


def test_every_variant_that_can_is_accepted():
    for name in variants_supporting("noncausal"):
        BERT(**TINY, attention=spec(name) if name in SMALL_OPTIONS else name)


def test_flops_and_params():
    model = BERT(**TINY, head="mlm")
    n, d = 12, 16
    attention = sum(b.attn.flops(n) for b in model.blocks)
    mlp = 2 * 2 * 2 * n * d * 4 * d  # 2 layers, 2 matmuls, 2 FLOPs per multiply-add
    head = 2 * n * d * d + 2 * n * d * 30
    assert model.flops_per_sequence(n) == attention + mlp + head
    linear = BERT(**TINY, attention="linear")
    assert linear.flops_per_sequence(16) != model.flops_per_sequence(16)  # the variant's own count is used
    assert model.num_params() == model.num_params(non_embedding=False) - 16 * 16


@pytest.mark.parametrize("name", ["full", "flurka_performer"])
def test_mlm_loss_decreases_on_a_structured_task(name):
    """Sequences alternate two random symbols (a b a b ...); the masked one follows from its context."""
    torch.manual_seed(0)
    model = BERT(vocab_size=20, max_len=12, n_layers=2, n_heads=2, d_model=32, attention=spec(name))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rows, losses = torch.arange(16), []
    for _ in range(150):
        a, b = torch.randint(3, 20, (16, 1)), torch.randint(3, 20, (16, 1))
        ids = torch.where(torch.arange(12) % 2 == 0, a, b)
        pos = torch.randint(0, 12, (16,))
        labels = torch.full_like(ids, -100)
        labels[rows, pos] = ids[rows, pos]
        masked = ids.clone()
        masked[rows, pos] = 2  # the [MASK] id of this toy vocabulary
        loss = model(masked, labels=labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.6 * sum(losses[:10]) / 10


def test_pretrained_encoder_loads_into_a_classifier():
    """GLUE fine-tuning: an MLM checkpoint's encoder loads exactly; the MLM head is dropped and the classifier
    is new, both reported; anything else that does not fit is still an error."""
    from flurka.models.transfer import transfer_weights

    mlm = BERT(**TINY, head="mlm")
    clf = BERT(**TINY, head="classification", num_labels=3)
    report = transfer_weights(clf, mlm.state_dict())
    assert sorted(report.new) == ["classifier.bias", "classifier.weight", "pooler.bias", "pooler.weight"]
    assert report.dropped and all(k.startswith("mlm_") for k in report.dropped)
    torch.testing.assert_close(clf.blocks[0].attn.q_proj.weight, mlm.blocks[0].attn.q_proj.weight, rtol=0, atol=0)
    wider = BERT(**{**TINY, "d_ff": 2 * (TINY.get("d_ff") or 4 * TINY["d_model"])}, head="classification")
    with pytest.raises(ValueError, match="does not fit"):
        transfer_weights(wider, mlm.state_dict())
