"""ViT: every non-causal variant trains at tiny size; the patch embedding is the textbook one; bad sizes refused."""

from __future__ import annotations

import pytest
import torch

from flurka.models.vit import ViT
from tests.attention.conftest import SMALL_OPTIONS

ENCODER_VARIANTS = ["full", "linformer", "performer", "linear", "eva", "flurka_performer", "flurka_rnn", "flurka_eva"]
TINY = dict(image_size=8, channels=3, num_classes=5, patch_size=2, n_layers=2, n_heads=2, d_model=16)


@pytest.mark.parametrize("pool", ["cls", "mean"])
@pytest.mark.parametrize("name", ENCODER_VARIANTS)
def test_forward_backward_every_variant(name, pool):
    model = ViT(**TINY, attention={"name": name, **SMALL_OPTIONS.get(name, {}), "backend": "torch"}, pool=pool)
    assert model.max_len == 16 + (pool == "cls")
    out = model(torch.randn(3, 3, 8, 8), labels=torch.tensor([0, 4, 2]))
    assert out["logits"].shape == (3, 5)
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.patch_emb.weight.grad.abs().sum() > 0
    if pool == "cls":
        assert model.cls_token.grad.abs().sum() > 0


def test_patch_embedding_is_a_linear_map_of_row_major_patches():
    model = ViT(**TINY).eval()
    pixels = torch.randn(2, 3, 8, 8)
    tokens = model.patch_emb(pixels).flatten(2).transpose(1, 2)  # what forward does
    p = 2
    for r in range(4):
        for c in range(4):
            patch = pixels[:, :, r * p : (r + 1) * p, c * p : (c + 1) * p].reshape(2, -1)
            expected = patch @ model.patch_emb.weight.reshape(16, -1).T + model.patch_emb.bias
            torch.testing.assert_close(tokens[:, r * 4 + c], expected)


def test_loss_is_cross_entropy_and_batch_rows_are_independent():
    model = ViT(**TINY).eval()
    pixels, labels = torch.randn(3, 3, 8, 8), torch.tensor([1, 0, 3])
    out = model(pixels, labels=labels)
    torch.testing.assert_close(out["loss"], -out["logits"].log_softmax(-1)[torch.arange(3), labels].mean())
    torch.testing.assert_close(model(pixels[1:2])["logits"], out["logits"][1:2], rtol=1e-5, atol=1e-6)


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match=r"square images only; got image_size=\(8, 6\)"):
        ViT(**{**TINY, "image_size": (8, 6)})
    with pytest.raises(ValueError, match="image_size=10 is not divisible by patch_size=4"):
        ViT(**{**TINY, "image_size": 10, "patch_size": 4})
    with pytest.raises(ValueError, match="unknown pool 'max'"):
        ViT(**TINY, pool="max")
    model = ViT(**{**TINY, "image_size": (8, 8)})
    with pytest.raises(ValueError, match=r"pixels must be \[B, 3, 8, 8\]; got \(1, 3, 16, 16\)"):
        model(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="causal only; non-causal variants"):
        ViT(**TINY, attention="scfa_hash")


def test_flops_count_patches_blocks_and_head():
    model = ViT(**TINY)
    n, d = 17, 16
    blocks = sum(b.flops(n) for b in model.blocks)
    assert model.flops_per_sequence() == 2 * 16 * 3 * 4 * d + blocks + 2 * d * 5
    assert model.flops_per_sequence(n) == model.flops_per_sequence()


@pytest.mark.parametrize("name", ["full", "flurka_performer"])
def test_loss_decreases_on_a_structured_task(name):
    """Noise images with one brightened quadrant; the quadrant is the class."""
    torch.manual_seed(0)
    model = ViT(
        image_size=8,
        channels=1,
        num_classes=4,
        patch_size=2,
        n_layers=2,
        n_heads=2,
        d_model=32,
        attention={"name": name, **SMALL_OPTIONS.get(name, {})},
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(300):
        labels = torch.randint(0, 4, (16,))
        pixels = torch.randn(16, 1, 8, 8) * 0.5
        for i, y in enumerate(labels.tolist()):
            r, c = divmod(y, 2)
            pixels[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 1.0
        loss = model(pixels, labels=labels)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.7 * sum(losses[:10]) / 10
