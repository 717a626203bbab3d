"""How far each unmasking order drifts from the true distribution as steps shrink.

The denoiser is exact (a Markov chain's posterior, ``d3lm.sampling.oracle``), so every error is
the sampler's: with one token per step all orders are exact (chain rule), with fewer steps
tokens committed together are drawn independently. Prints a markdown table of total variation
(mean over positions / adjacent pairs) and GC bias against the exact values.

    python bench/sampler_oracle.py --length 12 --samples 20000
"""

from __future__ import annotations

import argparse
import time

import torch

from d3lm.sampling import Sampler
from d3lm.sampling.oracle import (
    TOY_CLS,
    TOY_MASK,
    TOY_NUCLEOTIDES,
    MarkovChainDenoiser,
    toy_chain,
    toy_layout,
)

MASK, CLS, NUC = TOY_MASK, TOY_CLS, TOY_NUCLEOTIDES
#: row label -> Sampler axes (temperature 1: the exact setting)
ROWS = {
    "random": {"order": "random"},
    "ancestral": {"order": "random", "count": "ancestral"},
    "confidence": {"order": "confidence"},
    "margin": {"order": "margin"},
    "entropy": {"order": "entropy"},
    "p2": {"order": "p2"},
}


def divergences(samples: torch.Tensor, oracle: MarkovChainDenoiser, prompt: torch.Tensor):
    """(composition TV, dinucleotide TV, GC bias in percentage points) against the truth."""
    x = samples[:, 1:] - NUC[0]
    n, length = x.shape
    marg, pair = oracle.marginals(prompt)[0], oracle.pair_marginals(prompt)[0]
    comp = torch.stack([torch.bincount(x[:, i], minlength=4) for i in range(length)]) / n
    pairs = (
        torch.stack(
            [torch.bincount(4 * x[:, i] + x[:, i + 1], minlength=16) for i in range(length - 1)]
        )
        / n
    )
    tv_comp = 0.5 * (comp - marg).abs().sum(-1).mean()
    tv_pair = 0.5 * (pairs - pair.flatten(1)).abs().sum(-1).mean()
    gc = 100 * (comp[:, 1:3].sum(-1).mean() - marg[:, 1:3].sum(-1).mean())
    return float(tv_comp), float(tv_pair), float(gc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--length", type=int, default=12, help="nucleotides per sequence")
    ap.add_argument("--samples", type=int, default=20000)
    ap.add_argument("--steps", type=int, nargs="+", help="default: length, /2, /3, /4, /6, 1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    n = args.length
    steps = args.steps or sorted({n, n // 2, n // 3, n // 4, n // 6, 1} - {0}, reverse=True)
    oracle, layout = toy_chain(), toy_layout(n)
    prompt = torch.full((1, 1 + n), MASK)
    prompt[0, 0] = CLS
    # Sampling noise floor: an exact sampler (one token per step) with another seed.
    print(
        f"{n} nt, {args.samples} samples; cells: TV composition / TV dinucleotide / GC bias "
        "(pp); exact GC {:.1f} %".format(
            100 * float(oracle.marginals(prompt)[0, :, 1:3].sum(-1).mean())
        )
    )
    print("| order | " + " | ".join(f"T={t}" for t in steps) + " |")
    print("|---|" + "---|" * len(steps))
    t0 = time.perf_counter()
    for name, axes in ROWS.items():
        cells = []
        for t in steps:
            out = Sampler(**axes, steps=t).sample(
                oracle, args.samples, layout, seed=args.seed, batch_size=args.samples
            )
            cells.append("{:.3f} / {:.3f} / {:+.1f}".format(*divergences(out, oracle, prompt)))
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
