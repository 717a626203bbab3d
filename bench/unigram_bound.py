"""Bits per nucleotide of the best context-free model: the entropy of the token at each position
(of a tokeniser, over a dataset's training split), summed over positions, per nucleotide. A
model's ``val/bpn`` below this has learned context; at it, only composition.

    python bench/unigram_bound.py --dataset dhs --tokenizer nt6mer
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import d3lm.tokenizers  # noqa: F401  (registers the tokenisers)
from d3lm.data.tables import load_table
from d3lm.registry import TOKENIZERS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="dhs")
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/d3lm"))
    parser.add_argument("--tokenizer", default="nt6mer")
    parser.add_argument("--k", type=int, help="k of the kmer tokeniser")
    args = parser.parse_args()
    tok = TOKENIZERS.build(args.tokenizer, {"k": args.k} if args.k else {})
    table = load_table(args.dataset, args.cache_dir)
    ids = tok.batch_encode(table.loc[table["split"] == "train", "sequence"].tolist())
    bits = 0.0
    for column in ids.T:  # each position has its own unigram (6-mers in the body, singles after)
        counts = torch.bincount(column, minlength=tok.vocab_size).double()
        counts[tok.special_ids] = 0
        if counts.sum() > 0:
            p = counts[counts > 0] / counts.sum()
            bits -= float((p * p.log2()).sum())
    nucleotides = tok.token_lengths[ids].sum(-1).double().mean()
    print(f"{args.dataset} train, {args.tokenizer}: {bits / nucleotides:.4f} bits/nt")


if __name__ == "__main__":
    main()
