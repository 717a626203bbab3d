"""Bits per nucleotide of context-free models (a token distribution per position), two ways, and
of an order-k Markov chain on the validation split (what short context alone buys):

- ``plugin``: the entropy of the training split's per-position token frequencies. Biased low
  (by about (V - 1) / (2 N ln 2) bits per token: 0.09 bits/nt for 4,096 6-mers over 5,400
  sequences), so it is *below* what any context-free model scores on held-out data: a ``val/bpn``
  under it has certainly learned context.
- ``held_out``: those frequencies (add-1/2) scored on the validation split, the split ``val/bpn``
  is measured on: what a context-free model actually attains there.

    python bench/unigram_bound.py --dataset dhs --tokenizer nt6mer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import d3lm.tokenizers  # noqa: F401  (registers the tokenisers)
from d3lm.data.tables import load_table
from d3lm.registry import TOKENIZERS
from d3lm.tokenizers import Tokenizer


def plugin_bpn(tok: Tokenizer, train: list[str]) -> float:
    """Plug-in entropy of the per-position token frequencies of ``train``, per nucleotide."""
    ids = tok.batch_encode(train)
    bits = 0.0
    for column in ids.T:
        counts = torch.bincount(column, minlength=tok.vocab_size).double()
        counts[tok.special_ids] = 0
        if counts.sum() > 0:
            p = counts[counts > 0] / counts.sum()
            bits -= float((p * p.log2()).sum())
    return bits / float(tok.token_lengths[ids].sum(-1).double().mean())


def context_free_bpn(tok: Tokenizer, train: list[str], held_out: list[str]) -> float:
    """Held-out bits/nt of per-position token frequencies fitted on ``train``.

    Each position has its own distribution over the tokens that occur there in either set (add-1/2
    counts), so 6-mers in the body and single nucleotides in the tail are each modelled as such.
    """
    fit, test = tok.batch_encode(train), tok.batch_encode(held_out)
    width = max(fit.shape[1], test.shape[1])
    fit = torch.nn.functional.pad(fit, (0, width - fit.shape[1]), value=tok.pad_id)
    test = torch.nn.functional.pad(test, (0, width - test.shape[1]), value=tok.pad_id)
    special = torch.zeros(tok.vocab_size, dtype=torch.bool)
    special[tok.special_ids] = True
    bits = 0.0
    for column, scored in zip(fit.T, test.T, strict=True):
        seen = torch.bincount(torch.cat([column, scored]), minlength=tok.vocab_size) > 0
        support = seen & ~special
        counts = torch.bincount(column, minlength=tok.vocab_size).double() + 0.5
        log_p = (counts / counts[support].sum()).log2()
        real = scored[~special[scored]]
        bits -= float(log_p[real].sum())
    return bits / float(tok.token_lengths[test].sum())


def markov_bpn(train: list[str], held_out: list[str], order: int) -> float:
    """Held-out bits/nt of an order-``order`` Markov chain fitted on ``train`` (add-1/2 counts);
    the first bases of a sequence use the context they have. Sequences with N are skipped."""
    code = {base: i for i, base in enumerate("ACGT")}

    def codes(seqs: list[str]) -> list[np.ndarray]:
        return [np.array([code[c] for c in s.upper()]) for s in seqs if set(s.upper()) <= set(code)]

    fit, test = codes(train), codes(held_out)
    tables = [np.full((4**j, 4), 0.5) for j in range(order + 1)]
    contexts: list[list[tuple[int, np.ndarray, np.ndarray]]] = [[], []]
    for which, seqs in enumerate((fit, test)):
        for seq in seqs:
            for j in range(order + 1):
                ctx = np.zeros(len(seq) - j, dtype=np.int64)
                for back in range(j, 0, -1):
                    ctx = ctx * 4 + seq[j - back : len(seq) - back]
                at = np.arange(j, len(seq)) if j == order else np.array([j])
                keep = at - j
                contexts[which].append((j, ctx[keep], seq[at]))
    for j, ctx, base in contexts[0]:
        np.add.at(tables[j], (ctx, base), 1.0)
    probs = [t / t.sum(axis=1, keepdims=True) for t in tables]
    bits = -sum(float(np.log2(probs[j][ctx, base]).sum()) for j, ctx, base in contexts[1])
    return bits / sum(len(seq) for seq in test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="dhs")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/d3lm"))
    parser.add_argument("--tokenizer", default="nt6mer")
    parser.add_argument("--k", type=int, help="k of the kmer tokeniser")
    parser.add_argument("--markov", type=int, default=5, help="order of the Markov reference")
    args = parser.parse_args()
    tok = TOKENIZERS.build(args.tokenizer, {"k": args.k} if args.k else {})
    table = load_table(args.dataset, args.cache_dir)
    train, valid = (table.loc[table["split"] == s, "sequence"].tolist() for s in ("train", "valid"))
    print(
        f"{args.dataset}, {args.tokenizer}: plug-in (train) {plugin_bpn(tok, train):.4f} bits/nt, "
        f"held out (valid) {context_free_bpn(tok, train, valid):.4f} bits/nt; "
        f"order-{args.markov} Markov held out {markov_bpn(train, valid, args.markov):.4f} bits/nt"
    )


if __name__ == "__main__":
    main()
