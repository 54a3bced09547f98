"""An encoder-decoder Transformer for translation, with the attention of each sub-layer chosen separately.

    model = Seq2Seq(src_vocab_size=32000, tgt_vocab_size=32000, max_len=256, n_layers=6, n_heads=8,
                    d_model=512, attention="flurka_performer")      # the encoder's variant: the one under study
    out = model(src_ids, tgt_ids, src_mask=src_mask, labels=labels)  # {"logits": [B, T, V_tgt], "loss"}
    hyp = model.generate(src_ids, src_mask, beam_size=4)              # [B, T'] tokens, no BOS, pad_id-padded

As in the FLuRKA paper's WMT table, `attention` is the encoder's self-attention (non-causal); the decoder's
self-attention (`decoder_attention`, causal) and the cross-attention to the encoder (`cross_attention`) are
configured on their own. A variant that cannot serve its sub-layer is refused when the model is built, with
the variants that can.

`tgt_ids` is the decoder input (BOS first); `labels` are the next tokens, −100 where there is nothing to
predict. The decoder's output projection shares the target embedding; `tie_embeddings=True` also shares it
with the source embedding (a joint vocabulary; the two sizes must then agree). Pre-LN blocks, learned
positions, a final LayerNorm on each side.
"""

from __future__ import annotations

import torch
from torch import nn

from flurka.attention import attention_factory, factory_name, variants_supporting
from flurka.attention.positional import LearnedPositionalEmbedding
from flurka.models.blocks import Block, init_weights


def _require(factory, capability: str, attribute: str, role: str) -> None:
    """Refuse a variant that cannot serve `role`, naming the variants that can."""
    cls = getattr(factory, "func", factory)
    if not getattr(cls, attribute, True):
        raise ValueError(
            f"attention '{factory_name(factory)}' cannot serve as the {role}; variants that can: "
            f"{', '.join(variants_supporting(capability))}"
        )


class Seq2Seq(nn.Module):
    causal = False  # the variant under study (`attention`) serves the non-causal encoder

    def __init__(
        self,
        *,
        src_vocab_size: int,
        tgt_vocab_size: int,
        max_len: int,
        n_layers: int,
        n_heads: int,
        d_model: int,
        d_ff: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        attention="full",
        decoder_attention="full",
        cross_attention="full",
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        tie_embeddings: bool = False,
        activation: str = "gelu",
    ) -> None:
        super().__init__()
        enc_factory = attention_factory(attention)
        dec_factory = attention_factory(decoder_attention)
        cross_factory = attention_factory(cross_attention)
        _require(enc_factory, "noncausal", "supports_noncausal", "encoder self-attention (non-causal)")
        _require(dec_factory, "causal", "supports_causal", "decoder self-attention (causal)")
        _require(cross_factory, "cross", "supports_cross", "cross-attention")
        _require(cross_factory, "padding_mask", "supports_padding_mask", "cross-attention (padded sources)")
        if tie_embeddings and src_vocab_size != tgt_vocab_size:
            raise ValueError(
                f"tie_embeddings needs one joint vocabulary; got src_vocab_size={src_vocab_size}, "
                f"tgt_vocab_size={tgt_vocab_size}"
            )
        self.attention_name = factory_name(enc_factory)
        self.decoder_attention_name = factory_name(dec_factory)
        self.cross_attention_name = factory_name(cross_factory)
        self.max_len, self.d_model = max_len, d_model
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.pad_id, self.bos_id, self.eos_id = pad_id, bos_id, eos_id
        common = dict(max_len=max_len, d_ff=d_ff, dropout=dropout, bias=bias, activation=activation)

        self.src_emb = nn.Embedding(src_vocab_size, d_model)
        self.src_pos = LearnedPositionalEmbedding(max_len, d_model)
        self.encoder = nn.ModuleList(
            Block(d_model, n_heads, enc_factory, causal=False, **common) for _ in range(n_layers)
        )
        self.enc_ln = nn.LayerNorm(d_model, bias=bias)

        self.tgt_emb = nn.Embedding(tgt_vocab_size, d_model)
        self.tgt_pos = LearnedPositionalEmbedding(max_len, d_model)
        self.decoder = nn.ModuleList(
            Block(
                d_model, n_heads, dec_factory, causal=True, cross_attention=cross_factory, context_len=max_len, **common
            )
            for _ in range(n_layers)
        )
        self.dec_ln = nn.LayerNorm(d_model, bias=bias)
        self.lm_head = nn.Linear(d_model, tgt_vocab_size, bias=False)
        self.drop = nn.Dropout(dropout)
        init_weights(self, n_layers)
        self.lm_head.weight = self.tgt_emb.weight  # tied after init, so the names hold one tensor
        if tie_embeddings:
            self.src_emb.weight = self.tgt_emb.weight

    # ------------------------------------------------------------------ forward
    def _check_ids(self, ids: torch.Tensor, what: str) -> None:
        if ids.dim() != 2:
            raise ValueError(f"{what} must be [B, N]; got shape {tuple(ids.shape)}")
        if ids.shape[1] > self.max_len:
            raise ValueError(f"{what} has {ids.shape[1]} tokens, more than the model's max_len={self.max_len}")

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output [B, S, d_model]; padded source positions are masked out by `src_mask`."""
        self._check_ids(src_ids, "src_ids")
        x = self.drop(self.src_emb(src_ids) + self.src_pos(src_ids.shape[1]))
        for block in self.encoder:
            x = block(x, padding_mask=src_mask)
        return self.enc_ln(x)

    def decode(
        self,
        tgt_ids: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        *,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Next-token logits [B, T, V_tgt] for every decoder position, attending to `memory`; `last_only`: for
        the last position only, [B, 1, V_tgt] (what a search step reads: the head is a d × V GEMM per position,
        as costly as a decoder layer, so running it on the whole prefix every step doubled a beam search)."""
        self._check_ids(tgt_ids, "tgt_ids")
        y = self.drop(self.tgt_emb(tgt_ids) + self.tgt_pos(tgt_ids.shape[1]))
        for block in self.decoder:
            y = block(y, context=memory, context_mask=src_mask)
        if last_only:
            y = y[:, -1:]
        return self.lm_head(self.dec_ln(y))

    def forward(
        self,
        src_ids: torch.Tensor,
        tgt_ids: torch.Tensor,
        *,
        src_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        if src_ids.shape[0] != tgt_ids.shape[0]:
            raise ValueError(f"src_ids and tgt_ids differ in batch size: {src_ids.shape[0]} vs {tgt_ids.shape[0]}")
        logits = self.decode(tgt_ids, self.encode(src_ids, src_mask), src_mask)
        out = {"logits": logits}
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100
            )
        return out

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(
        self,
        src_ids: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        *,
        beam_size: int = 4,
        max_new_tokens: int | None = None,
        length_penalty: float = 1.0,
    ) -> torch.Tensor:
        """Beam search; returns [B, T] tokens without BOS, each hypothesis ending in EOS (unless it ran out of
        length), padded with pad_id. beam_size=1 is greedy decoding. PAD and BOS are never generated.

        Beams are pruned by their summed log-probability; the final choice among a source's beams divides by
        length**length_penalty (0 = the raw sum). A finished beam stays in the beam with its score frozen, so
        it competes with live beams until the end. The decoder re-runs over the whole prefix every step: there
        is no KV cache, because several variants (Linformer/FLuRKA projections, SCFA) have no incremental form
        here; this costs O(T²) decoder passes, which is fine at evaluation sizes.
        """
        if beam_size < 1:
            raise ValueError(f"beam_size must be ≥ 1; got {beam_size}")
        limit = self.max_len - 1 if max_new_tokens is None else max_new_tokens
        if not 1 <= limit <= self.max_len - 1:
            raise ValueError(f"max_new_tokens must be in [1, max_len - 1 = {self.max_len - 1}]; got {limit}")
        was_training = self.training
        self.eval()  # dropout off while searching; the caller's mode comes back afterwards
        try:
            return self._beam_search(src_ids, src_mask, beam_size, limit, length_penalty)
        finally:
            self.train(was_training)

    def _beam_search(
        self, src_ids: torch.Tensor, src_mask: torch.Tensor | None, K: int, limit: int, length_penalty: float
    ) -> torch.Tensor:
        B, V = src_ids.shape[0], self.tgt_vocab_size
        device = src_ids.device
        memory = self.encode(src_ids, src_mask).repeat_interleave(K, dim=0)
        mask = src_mask.repeat_interleave(K, dim=0) if src_mask is not None else None
        tokens = torch.full((B * K, 1), self.bos_id, dtype=torch.long, device=device)
        scores = torch.full((B, K), float("-inf"), device=device)
        scores[:, 0] = 0.0  # one live hypothesis per source at the start, so beams never duplicate
        finished = torch.zeros(B * K, dtype=torch.bool, device=device)
        lengths = torch.zeros(B * K, dtype=torch.long, device=device)
        banned = sorted({self.pad_id, self.bos_id} - {self.eos_id})
        for _ in range(limit):
            logp = torch.log_softmax(self.decode(tokens, memory, mask, last_only=True)[:, -1].float(), dim=-1)
            logp[:, banned] = float("-inf")
            logp[finished] = float("-inf")
            logp[finished, self.pad_id] = 0.0  # a finished beam's only continuation: pad, at no cost
            top, index = (scores.view(-1, 1) + logp).view(B, K * V).topk(K, dim=-1)
            rows = (torch.arange(B, device=device)[:, None] * K + index // V).view(-1)
            new = (index % V).view(-1)
            tokens = torch.cat([tokens[rows], new[:, None]], dim=1)
            was_finished = finished[rows]
            lengths = lengths[rows] + (~was_finished).long()
            scores = top
            # an impossible hypothesis (−inf, when K exceeds the live candidates) is treated as done
            finished = was_finished | (new == self.eos_id) | torch.isinf(top.view(-1))
            if finished.all():
                break
        normalised = scores / lengths.view(B, K).clamp(min=1).float() ** length_penalty
        best = normalised.argmax(dim=-1)
        out = tokens.view(B, K, -1)[torch.arange(B, device=device), best, 1:]
        width = int(lengths.view(B, K)[torch.arange(B, device=device), best].max())
        return out[:, :width]

    def sequence_log_prob(
        self, src_ids: torch.Tensor, hyp: torch.Tensor, src_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Summed log-probability [B] of hypotheses as `generate` returns them (no BOS, pad after EOS)."""
        bos = torch.full_like(hyp[:, :1], self.bos_id)
        logp = torch.log_softmax(self(src_ids, torch.cat([bos, hyp[:, :-1]], 1), src_mask=src_mask)["logits"], -1)
        token_logp = logp.gather(-1, hyp[..., None]).squeeze(-1)
        after_eos = (hyp == self.eos_id).long().cumsum(1) - (hyp == self.eos_id).long() > 0
        return token_logp.masked_fill(after_eos, 0.0).sum(1)

    # ------------------------------------------------------------------ size and cost
    def num_params(self, non_embedding: bool = True) -> int:
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.src_pos.weight.numel() + self.tgt_pos.weight.numel()
        return n

    def flops_per_sequence(self, n: int) -> int:
        """Forward FLOPs for one pair of n source and n target tokens, from each variant's own count (the
        decoder blocks' count includes their cross-attention)."""
        head = 2 * n * self.d_model * self.tgt_vocab_size
        return sum(b.flops(n) for b in self.encoder) + sum(b.flops(n) for b in self.decoder) + head
