"""Sampling throughput: sequences/s and network evaluations (NFE) per sequence, per preset and
step count, for the optimised loop (feature cache + committed-positions-only head) and the
straightforward one (network and full softmax at every position, every step), in one run.

    python bench/bench_sampling.py --checkpoint runs/.../last.ckpt --n 1000 --out grid.csv
    python bench/bench_sampling.py --random-init --n 32        # before a checkpoint exists
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from machine import cpu_name

from d3lm.io import write_with
from d3lm.registry import SAMPLERS
from d3lm.sampling import PRESETS, NetworkDenoiser, Sampler

MODES = {"optimised": {}, "straightforward": {"cache": False, "sparse_head": False}}


def load(args: argparse.Namespace) -> tuple[NetworkDenoiser, torch.Tensor]:
    """Denoiser and the layout for ``--bp`` nucleotides, from a checkpoint or random weights."""
    if args.random_init:
        import dataclasses

        from d3lm.model import LMHead, NTv2Encoder
        from d3lm.registry import BACKBONES, TOKENIZERS
        from d3lm.tokenizers import kmer  # noqa: F401  (registers nt6mer)

        tok = TOKENIZERS.build("nt6mer")
        cfg = dataclasses.replace(BACKBONES.build(args.size), vocab_size=tok.vocab_size)
        encoder, head = NTv2Encoder(cfg), LMHead(cfg)
    else:
        from d3lm.lit.diffusion_lm import DiffusionLM

        lm = DiffusionLM.load_from_checkpoint(args.checkpoint, map_location="cpu")
        tok, encoder, head = lm.tokenizer, lm.encoder, lm.head
    encoder, head = encoder.to(args.device).eval(), head.to(args.device).eval()
    autocast = torch.bfloat16 if args.bf16 else None
    den = NetworkDenoiser(encoder, head, tok.mask_id, tok.vocab_size, autocast=autocast)
    return den, tok.layout(args.bp).to(args.device)


def textbook_random(
    den: NetworkDenoiser,
    n: int,
    layout: torch.Tensor,
    steps: int,
    batch_size: int,
    temperature: float = 1.1,
) -> None:
    """Reference: random order the way MDLM/LLaDA code writes it, for context only. Network,
    float64 softmax and a Gumbel-max (exponential race) draw over the whole vocabulary at every
    position and every step; LLaDA's per-step counts; torch's global generator."""
    known = layout.sum(-1) == 1
    free = len(known) - int(known.sum())
    counts = [free // steps + (i < free % steps) for i in range(steps)]
    for start in range(0, n, batch_size):
        ids = torch.full(
            (min(batch_size, n - start), len(known)), den.mask_id, device=layout.device
        )
        ids[:, known] = layout[known].long().argmax(-1)
        for k in counts:
            logits = den.logits(den.features(ids)).double().masked_fill(~layout, float("-inf"))
            probs = torch.softmax(logits / temperature, -1)
            x0 = (probs / -torch.log(torch.rand_like(probs))).argmax(-1)
            scores = torch.rand(ids.shape, device=ids.device)
            scores = scores.masked_fill(ids != den.mask_id, -1.0)
            pos = scores.topk(k, dim=1).indices
            ids.scatter_(1, pos, x0.gather(1, pos))


def table(rows: pd.DataFrame) -> str:
    """Markdown: one line per preset and T, both loops side by side, and their ratio."""
    wide = rows.pivot_table(index=["preset", "T"], columns="mode", values=["seq_s", "nfe"])
    lines = [
        "| preset | T | optimised seq/s | NFE/seq | straightforward seq/s | NFE/seq | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for (preset, steps), r in wide.iterrows():
        fast, slow = r["seq_s"].get("optimised"), r["seq_s"].get("straightforward")
        ratio = f"{fast / slow:.2f}x" if fast and slow else ""
        lines.append(
            f"| {preset} | {steps} | {fast:.2f} | {r['nfe'].get('optimised'):.1f} | "
            f"{slow:.2f} | {r['nfe'].get('straightforward'):.1f} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a DiffusionLM Lightning checkpoint")
    src.add_argument("--random-init", action="store_true", help="untrained backbone (timing)")
    ap.add_argument("--size", default="tiny", help="backbone preset for --random-init")
    ap.add_argument("--n", type=int, default=1000, help="sequences per measurement")
    ap.add_argument(
        "--baseline-n",
        type=int,
        help="sequences for the straightforward loop (default: --n); "
        "seq/s is per sequence, so a smaller n only widens its error bars",
    )
    ap.add_argument("--bp", type=int, default=200)
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50, 100])
    ap.add_argument("--presets", nargs="+", default=sorted(PRESETS), choices=sorted(PRESETS))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the network to bfloat16")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    ap.add_argument(
        "--out",
        help="CSV of measurements, rewritten atomically after each; a rerun skips the "
        "cells it already holds (same n, bp, batch size), so an interrupted grid resumes",
    )
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    den, layout = load(args)
    sizes = {"optimised": args.n, "straightforward": args.baseline_n or args.n}
    sizes["textbook"] = sizes["straightforward"]
    print(
        f"{sizes} x {args.bp} bp ({layout.shape[0]} tokens), batch {args.batch_size}, "
        f"{args.device}, threads {torch.get_num_threads()}, {cpu_name()}",
        flush=True,
    )
    SAMPLERS.build("random", {"steps": 2}).sample(den, 2, layout, seed=0)  # warm-up
    key = ["preset", "T", "mode", "n", "bp", "batch_size"]
    rows = pd.DataFrame(columns=[*key, "seconds", "seq_s", "nfe"])
    if args.out and Path(args.out).exists():
        rows = pd.read_csv(args.out)
    done = set(map(tuple, rows[key].itertuples(index=False)))

    def run(preset: str, steps: int, mode: str, go: Callable[[int], float]) -> None:
        """Measure one cell unless the CSV holds it; ``go(n)`` samples and returns NFE/seq."""
        nonlocal rows
        n = sizes[mode]
        if (preset, steps, mode, n, args.bp, args.batch_size) in done:
            return
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else lambda: None
        sync()
        t0 = time.perf_counter()
        nfe = go(n)
        sync()
        seconds = time.perf_counter() - t0
        row = dict(zip(key, (preset, steps, mode, n, args.bp, args.batch_size), strict=True))
        row |= {"seconds": seconds, "seq_s": n / seconds, "nfe": nfe}
        rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True)
        print(
            f"{preset} T={steps} {mode} n={n}: {n / seconds:.2f} seq/s, NFE {nfe:.1f}", flush=True
        )
        if args.out:
            write_with(args.out, lambda f: rows.to_csv(f, index=False))

    for preset in args.presets:
        for steps in args.steps:
            for mode, flags in MODES.items():
                sampler = SAMPLERS.build(preset, {"steps": steps, **flags})

                def go(n: int, s: Sampler = sampler) -> float:
                    s.sample(den, n, layout, seed=0, batch_size=args.batch_size)
                    assert s.last_run is not None
                    return float(s.last_run.nfe.double().mean())

                run(preset, steps, mode, go)
    if "random" in args.presets and 50 in args.steps:

        def textbook(n: int) -> float:
            textbook_random(den, n, layout, 50, args.batch_size)
            return 50.0

        run("random", 50, "textbook", textbook)
    mine = (rows["bp"] == args.bp) & (rows["batch_size"] == args.batch_size)
    mine &= rows["n"] == rows["mode"].map(sizes)
    grid = rows[mine & (rows["mode"] != "textbook")]
    print("\n" + table(grid))
    book = rows[mine & (rows["mode"] == "textbook")]
    if len(book):
        fast = grid.query("preset == 'random' and T == 50 and mode == 'optimised'")["seq_s"]
        print(
            f"\nrandom @ T=50, textbook loop (float64 Gumbel-max over V everywhere): "
            f"{book['seq_s'].iloc[0]:.2f} seq/s; optimised / textbook = "
            f"{fast.iloc[0] / book['seq_s'].iloc[0]:.2f}x"
        )


if __name__ == "__main__":
    main()
