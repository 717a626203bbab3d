"""The Nucleotide Transformer v2 encoder (a pre-LayerNorm ESM-style transformer with rotary
attention and a SwiGLU feed-forward), and its size presets.

Module names follow the HF NT v2 checkpoint closely so that weight import is one table:

=========================================  ====================================================
ours                                       HF (``esm.`` prefix)
=========================================  ====================================================
``embeddings.word_embeddings``             ``embeddings.word_embeddings``
(none: rotary positions)                   ``embeddings.position_embeddings`` (unused)
``layers.{i}.attention_norm``              ``encoder.layer.{i}.attention.LayerNorm``
``layers.{i}.attention.{query,key,value}`` ``encoder.layer.{i}.attention.self.{query,key,value}``
``layers.{i}.attention.output``            ``encoder.layer.{i}.attention.output.dense``
``layers.{i}.ffn_norm``                    ``encoder.layer.{i}.LayerNorm``
``layers.{i}.ffn.gate_up``                 ``encoder.layer.{i}.intermediate.dense``
``layers.{i}.ffn.down``                    ``encoder.layer.{i}.output.dense``
``final_norm``                             ``encoder.emb_layer_norm_after``
=========================================  ====================================================
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from d3lm.model.rotary import Rotary
from d3lm.registry import BACKBONES

#: (rows, cols) index tensors of the positions whose outputs are wanted.
Query = tuple[Tensor, Tensor]

#: Standard deviation of the normal initialisation of linear and embedding weights (ESM / BERT).
INIT_STD = 0.02


@dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """Shape of an NT v2-style encoder; ``max_len`` is the longest token sequence accepted."""

    vocab_size: int = 4107
    n_layers: int
    hidden: int
    heads: int
    ffn: int
    max_len: int
    layer_norm_eps: float = 1e-12
    rotary_base: float = 10000.0
    #: Not in NT v2 (whose checkpoint is untied and has no nucleotide table); both default off.
    #: ``tie_embeddings``: the LM head's decoder is the input embedding table, so copying a token
    #: seen in context needs no separate output row per token.
    tie_embeddings: bool = False
    #: ``nucleotide_embeddings``: a token's embedding adds one learned vector per (offset in the
    #: token, nucleotide), so k-mers sharing bases share statistics instead of each of 4,096
    #: 6-mers being learned from its own occurrences alone.
    nucleotide_embeddings: bool = False
    #: ``condition_tokens``: ids ``vocab_size ..`` + this count are condition tokens (a class
    #: label, :mod:`d3lm.conditioning`) with a table of their own, so NT v2's word embeddings
    #: and LM head keep their layout; set by the LightningModule from its conditioning plugin.
    condition_tokens: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "n_layers", "hidden", "heads", "ffn", "max_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"BackboneConfig.{name} must be positive, got {self}")
        if self.condition_tokens < 0:
            raise ValueError(f"BackboneConfig.condition_tokens must be >= 0, got {self}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden {self.hidden} is not divisible by heads {self.heads}")
        if self.head_dim % 2:
            raise ValueError(f"rotary needs an even head dimension, got {self.head_dim}")

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


#: Named sizes; each is registered in ``BACKBONES`` as a factory taking field overrides.
PRESETS: dict[str, BackboneConfig] = {
    "micro": BackboneConfig(n_layers=2, hidden=64, heads=4, ffn=128, max_len=1024),
    "tiny": BackboneConfig(n_layers=4, hidden=192, heads=6, ffn=768, max_len=2048),
    "nt-v2-50m": BackboneConfig(n_layers=12, hidden=512, heads=16, ffn=2048, max_len=2048),
    "nt-v2-100m": BackboneConfig(n_layers=22, hidden=512, heads=16, ffn=2048, max_len=2048),
}


def _register_preset(name: str, base: BackboneConfig) -> None:
    """Register ``name`` as a factory whose signature is the config fields, defaulting to the
    preset's values, so ``BACKBONES.build`` rejects unknown overrides and names the valid ones."""

    def factory(**overrides: Any) -> BackboneConfig:
        return dataclasses.replace(base, **overrides)

    factory.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [
            inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=getattr(base, f.name))
            for f in dataclasses.fields(base)
        ]
    )
    factory.__annotations__ = typing.get_type_hints(BackboneConfig)  # values are type-checked
    factory.__name__ = factory.__qualname__ = f"preset_{name.replace('-', '_')}"
    factory.__doc__ = (
        f"NT v2-style encoder: {base.n_layers} layers, hidden {base.hidden}, {base.heads} heads, "
        f"FFN {base.ffn}, up to {base.max_len} tokens."
    )
    BACKBONES.register(name)(factory)


for _name, _cfg in PRESETS.items():
    _register_preset(_name, _cfg)


def init_weights(module: nn.Module) -> None:
    """ESM/BERT initialisation: N(0, 0.02) weights, zero biases, unit LayerNorm."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=INIT_STD)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        nn.init.zeros_(module.weight[module.padding_idx])
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class SelfAttention(nn.Module):
    """Multi-head self-attention with rotary q/k, biased projections and torch SDPA.

    SDPA's default scale head_dim^-0.5 equals NT's scaling of q before rotary (rotary is linear).
    """

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)
        self.output = nn.Linear(cfg.hidden, cfg.hidden)
        self.rotary = Rotary(cfg.head_dim, cfg.rotary_base)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.heads, -1).transpose(1, 2)  # (B, heads, L, head_dim)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None, causal: bool, at: Query | None = None
    ) -> Tensor:
        """(B, L, hidden) -> (B, L, hidden); with ``at`` = (rows, cols), outputs only there:
        -> (N, hidden), each query attending over all keys of its row.

        With at most one query per row on average (a sampler committing a token per sequence)
        each query attends over a copy of its row's keys and values (N x L x hidden); with more
        (training's masked positions) that copy would outgrow the whole attention, so all
        queries attend and only the output projection runs at the ``at`` positions.
        """
        k = self.rotary(self._split(self.key(x)))
        v = self._split(self.value(x))
        if at is not None and len(at[0]) <= x.shape[0]:
            rows, cols = at
            q = self.query(x[rows, cols]).view(len(rows), self.heads, 1, k.shape[-1])
            q = self.rotary(q, cols, x.shape[1])
            mask = None if attn_mask is None else attn_mask[rows]
            out = F.scaled_dot_product_attention(q, k[rows], v[rows], attn_mask=mask)
            return self.output(out.flatten(1))
        q = self.rotary(self._split(self.query(x)))
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, is_causal=causal and attn_mask is None
        ).transpose(1, 2)
        return self.output(out.flatten(2) if at is None else out[at].flatten(1))

    def forward_kv(self, x: Tensor, at: Query, kv: Tensor, queries: Tensor | None) -> Tensor:
        """Attention over cached keys and values (dKV): ``x`` (N, hidden) holds the inputs at
        the positions ``at`` = (rows, cols) only; their keys (post-rotary) and values are written
        into ``kv`` (B, 2, heads, L, head_dim), whose other positions are taken as they are, and
        each of them, or the subset ``queries`` (N,) bool, attends over its row -> (N_q, hidden).
        Queries are padded per row to the row with the most (one batched attention call)."""
        rows, cols = at
        length, dim = kv.shape[-2:]
        key = self.rotary(self.key(x).view(len(rows), self.heads, 1, dim), cols, length)
        kv[rows, 0, :, cols] = key.squeeze(2).to(kv.dtype)
        kv[rows, 1, :, cols] = self.value(x).view(len(rows), self.heads, dim).to(kv.dtype)
        if queries is not None:
            x, rows, cols = x[queries], rows[queries], cols[queries]
        q = self.rotary(self.query(x).view(len(rows), self.heads, 1, dim), cols, length)
        per_row = torch.bincount(rows, minlength=kv.shape[0])
        slot = torch.arange(len(rows), device=rows.device) - (per_row.cumsum(0) - per_row)[rows]
        padded = q.new_zeros((kv.shape[0], int(per_row.max()), self.heads, q.shape[-1]))
        padded[rows, slot] = q.squeeze(2)
        out = F.scaled_dot_product_attention(padded.transpose(1, 2), kv[:, 0], kv[:, 1])
        return self.output(out.transpose(1, 2)[rows, slot].flatten(1))


class SwiGLU(nn.Module):
    """One hidden -> 2*ffn projection split in order into (gate, up): silu(gate) * up -> hidden."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.gate_up = nn.Linear(cfg.hidden, 2 * cfg.ffn, bias=False)
        self.down = nn.Linear(cfg.ffn, cfg.hidden, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        if torch.is_grad_enabled():
            return self.down(F.silu(gate) * up)
        # Inference (sampling): the same values written into the projection's own buffer, two
        # (tokens x ffn) allocations fewer per block.
        return self.down(F.silu(gate, inplace=True).mul_(up))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, cfg: BackboneConfig) -> None:
        super().__init__()
        self.attention_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.attention = SelfAttention(cfg)
        self.ffn_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.ffn = SwiGLU(cfg)

    def forward(
        self, x: Tensor, attn_mask: Tensor | None, causal: bool, at: Query | None = None
    ) -> Tensor:
        """(B, L, hidden) -> (B, L, hidden), or (N, hidden) at the ``at`` positions only."""
        h = self.attention(self.attention_norm(x), attn_mask, causal, at)
        x = x + h if at is None else x[at] + h
        return x + self.ffn(self.ffn_norm(x))


class Embeddings(nn.Module):
    """Token embeddings (positions enter through rotary attention), optionally plus the sum of
    per-(offset, nucleotide) vectors of the bases each token spells (``nucleotide_embeddings``);
    ids from ``vocab_size`` on look up the condition table (``condition_tokens``).

    ``nucleotide_codes`` (vocab, width) is the tokenizer's ``nucleotide_codes()`` table.
    """

    def __init__(self, cfg: BackboneConfig, nucleotide_codes: Tensor | None = None) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden)
        self.nucleotide_embeddings: nn.Embedding | None = None
        if cfg.nucleotide_embeddings:
            if nucleotide_codes is None or nucleotide_codes.shape[0] != cfg.vocab_size:
                raise ValueError(
                    "nucleotide_embeddings needs the tokenizer's nucleotide_codes() table with "
                    f"one row per token ({cfg.vocab_size})"
                )
            width = nucleotide_codes.shape[1]
            empty = 5 * width  # one zero row for "no base here"
            offsets = 5 * torch.arange(width)
            index = torch.where(nucleotide_codes >= 0, nucleotide_codes + offsets, empty)
            self.register_buffer("nucleotide_index", index, persistent=False)
            self.nucleotide_embeddings = nn.Embedding(empty + 1, cfg.hidden, padding_idx=empty)
        self.condition_embeddings: nn.Embedding | None = None
        if cfg.condition_tokens:
            self.condition_embeddings = nn.Embedding(cfg.condition_tokens, cfg.hidden)
        #: (word weights, nucleotide weights, their summed table): ``weight()``'s no-grad cache.
        self._table: tuple[Tensor, Tensor, Tensor] | None = None

    def weight(self) -> Tensor:
        """The (vocab, hidden) table a token id looks up (and a tied decoder multiplies).

        The per-nucleotide sum costs a (vocab x width x hidden) gather per call, twice per
        forward with a tied head. Without gradients (sampling, evaluation) the sum is kept with
        copies of the weights it came from and reused while the weights still equal them: a
        comparison reads 1/width as much memory, and unlike version counters (which fused
        optimisers do not bump) it cannot miss a change.
        """
        table = self.word_embeddings.weight
        if self.nucleotide_embeddings is None:
            return table
        nuc = self.nucleotide_embeddings.weight
        if torch.is_grad_enabled():
            return table + self.nucleotide_embeddings(self.nucleotide_index).sum(dim=1)
        kept = self._table
        if kept is None or not all(
            a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)
            for a, b in zip(kept[:2], (table, nuc), strict=True)
        ):
            summed = table + self.nucleotide_embeddings(self.nucleotide_index).sum(dim=1)
            kept = self._table = (table.clone(), nuc.clone(), summed)
        return kept[2]

    def forward(self, ids: Tensor) -> Tensor:
        """Embeddings of ``ids`` of any shape (forward_kv passes the active positions, 1-D)."""
        if self.condition_embeddings is None:
            return self._tokens(ids)
        # Both lookups everywhere and a select: no data-dependent shapes (no host sync), and the
        # vocabulary path stays the unconditioned one.
        vocab = self.word_embeddings.num_embeddings
        condition = ids >= vocab
        tokens = self._tokens(ids.masked_fill(condition, 0))
        labels = self.condition_embeddings((ids - vocab).clamp(min=0))
        return torch.where(condition.unsqueeze(-1), labels, tokens)

    def _tokens(self, ids: Tensor) -> Tensor:
        if self.nucleotide_embeddings is None:
            return self.word_embeddings(ids)
        return F.embedding(ids, self.weight())


class NTv2Encoder(nn.Module):
    """The NT v2 network: embeddings -> pre-LN blocks -> final LayerNorm. No dropout."""

    def __init__(self, cfg: BackboneConfig, nucleotide_codes: Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embeddings = Embeddings(cfg, nucleotide_codes)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=cfg.layer_norm_eps)
        self.apply(init_weights)

    def forward(
        self,
        ids: Tensor,
        attention_mask: Tensor | None = None,
        causal: bool = False,
        at: Tensor | None = None,
    ) -> Tensor:
        """Hidden states (B, L, hidden) for token ids (B, L).

        ``attention_mask`` marks real tokens (True); pads are excluded as keys, and outputs at pad
        positions are meaningless. ``causal`` lets position i see only positions <= i (for the
        autoregressive baseline). ``at`` (B, L) bool asks for the states at those positions
        only, as (N, hidden) in row-major order: the last block then computes queries, FFN and
        norm only there (a sampler that knows which positions it will commit saves ~1/n_layers).
        """
        length = ids.shape[1]
        if length > self.cfg.max_len:
            raise ValueError(f"{length} tokens exceed the backbone's max_len {self.cfg.max_len}")
        attn_mask = None
        if attention_mask is not None:
            # A row with no real token would make every score -inf (NaN outputs, NaN gradients):
            # let such rows attend everywhere; their outputs are ignored anyway.
            keys = attention_mask | ~attention_mask.any(dim=-1, keepdim=True)
            attn_mask = keys[:, None, None, :]  # (B, 1, 1, L): broadcast over heads and queries
            if causal:
                tril = torch.ones(length, length, dtype=torch.bool, device=ids.device).tril()
                attn_mask = attn_mask & tril
        if at is not None and causal:
            raise ValueError("`at` needs bidirectional attention: every row's keys at every step")
        x = self.embeddings(ids)
        for layer in self.layers[:-1]:
            x = layer(x, attn_mask, causal)
        query = None if at is None else at.nonzero(as_tuple=True)
        return self.final_norm(self.layers[-1](x, attn_mask, causal, query))

    def forward_kv(
        self, ids: Tensor, at: Tensor, kv: Tensor | None, reuse: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``forward(ids, at=at)`` with the keys and values at the ``reuse`` (B, L) positions
        taken from ``kv`` (B, n_layers, 2, heads, L, head_dim; keys post-rotary), so every
        block runs at the other positions (and ``at``) only: a sampler's dKV cache. Approximate
        where anything is reused (bidirectional: a reused key is from its old context). ``kv``
        is updated in place where computed and returned (allocated when None: no reuse)."""
        b, length = ids.shape
        if length > self.cfg.max_len:
            raise ValueError(f"{length} tokens exceed the backbone's max_len {self.cfg.max_len}")
        active = ~reuse | at
        if kv is None and not active.all():
            raise ValueError("reusing keys and values needs the cache they are taken from")
        rows, cols = active.nonzero(as_tuple=True)
        x = self.embeddings(ids[rows, cols])
        for i, layer in enumerate(self.layers):
            h = layer.attention_norm(x)
            if kv is None:  # in the dtype of the activations (autocast's, if on)
                shape = (b, len(self.layers), 2, self.cfg.heads, length, self.cfg.head_dim)
                kv = h.new_empty(shape, dtype=layer.attention.key(h[:1]).dtype)
            queries = at[rows, cols] if i == len(self.layers) - 1 else None
            out = layer.attention.forward_kv(h, (rows, cols), kv[:, i], queries)
            x = (x if queries is None else x[queries]) + out
            x = x + layer.ffn(layer.ffn_norm(x))
        assert kv is not None
        return self.final_norm(x), kv
