"""Separate query/key/value projections against one fused projection, forward and backward,
at the token counts of a training step: does fusing pay on this machine?

    python bench/bench_fused_qkv.py [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from machine import describe, splice

#: (preset, tokens per step, hidden): tiny at 64 x 35 tokens, nt-v2-50m at 8 x 342.
SHAPES = [("tiny", 64 * 35, 192), ("nt-v2-50m", 8 * 342, 512)]


def times(tokens: int, hidden: int, repeats: int = 20) -> dict[str, float]:
    """Median ms of each form, interleaved."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, hidden, generator=g, requires_grad=True)
    weights = [torch.randn(hidden, hidden, generator=g, requires_grad=True) for _ in range(3)]
    biases = [torch.zeros(hidden, requires_grad=True) for _ in range(3)]
    fused_w = torch.cat(weights).detach().requires_grad_()
    fused_b = torch.cat(biases).detach().requires_grad_()

    def separate() -> None:
        sum(F.linear(x, w, b).sum() for w, b in zip(weights, biases, strict=True)).backward()

    def fused() -> None:
        q, k, v = F.linear(x, fused_w, fused_b).chunk(3, dim=-1)
        (q.sum() + k.sum() + v.sum()).backward()

    forms = {"separate": separate, "fused": fused}
    seen: dict[str, list[float]] = {name: [] for name in forms}
    for rep in range(repeats + 2):
        for name, form in forms.items():
            start = time.perf_counter()
            form()
            if rep >= 2:
                seen[name].append((time.perf_counter() - start) * 1e3)
    return {name: statistics.median(t) for name, t in seen.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", type=Path, help="splice the Markdown into this BENCHMARKS.md")
    args = ap.parse_args()
    lines = [
        f"Machine: {describe('cpu')}.",
        "",
        "| preset | tokens x hidden | separate q, k, v (ms) | fused qkv (ms) | fused / sep. |",
        "|---|---|---|---|---|",
    ]
    for preset, tokens, hidden in SHAPES:
        t = times(tokens, hidden)
        lines.append(
            f"| {preset} | {tokens} x {hidden} | {t['separate']:.1f} | {t['fused']:.1f} | "
            f"{t['fused'] / t['separate']:.2f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.write:
        splice(args.write, "fused-qkv", text)


if __name__ == "__main__":
    main()
