"""The sampler's ``kv_cache`` axis: sequences/s of one preset without (``none``) and with ``dkv``
(keys and values of decided positions reused, all refreshed every r steps), network calls and
full passes per sequence, and the share of tokens the approximation leaves as the exact sampler
drew them (same seed; an untrained network's distributions are flat, so any change cascades).

    python bench/bench_kv_cache.py --random-init --n 128 --refresh 5 10
    python bench/bench_kv_cache.py --checkpoint runs/.../last.ckpt --preset remdm --refresh 2 5
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_sampling import load
from machine import cpu_flags, cpu_name

from d3lm.registry import SAMPLERS
from d3lm.sampling import PRESETS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a DiffusionLM Lightning checkpoint")
    src.add_argument("--random-init", action="store_true", help="untrained backbone (timing)")
    ap.add_argument("--size", default="tiny", help="backbone preset for --random-init")
    ap.add_argument("--preset", default="random", choices=sorted(PRESETS))
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--refresh", type=int, nargs="+", default=[5, 10])
    ap.add_argument("--n", type=int, default=128, help="sequences per measurement")
    ap.add_argument("--bp", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs; the fastest counts")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bf16", action="store_true", help="autocast the network to bfloat16")
    ap.add_argument("--threads", type=int, help="torch CPU threads")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # --random-init: the same network in every run
    den, layout = load(args)
    print(
        f"{args.preset} T={args.steps}, n={args.n} x {args.bp} bp ({layout.shape[0]} tokens), "
        f"batch {args.batch_size}, {args.device}, threads {torch.get_num_threads()}, "
        f"{cpu_name()} ({', '.join(cpu_flags())})",
        flush=True,
    )
    modes = {"none": {}} | {
        f"dkv r={r}": {"kv_cache": "dkv", "kv_cache_params": {"refresh": r}} for r in args.refresh
    }
    steps = {"steps": args.steps}
    samplers = {mode: SAMPLERS.build(args.preset, steps | p) for mode, p in modes.items()}
    SAMPLERS.build(args.preset, {"steps": 2}).sample(den, 2, layout, seed=0)  # warm-up
    best = dict.fromkeys(modes, float("inf"))
    outputs = {}
    for _ in range(args.repeats):
        for mode, sampler in samplers.items():
            t0 = time.perf_counter()
            outputs[mode] = sampler.sample(den, args.n, layout, seed=0, batch_size=args.batch_size)
            best[mode] = min(best[mode], time.perf_counter() - t0)
    lines = [
        "| kv_cache | seq/s | speed-up | NFE/seq | full passes/seq | tokens as exact |",
        "|---|---|---|---|---|---|",
    ]
    for mode, sampler in samplers.items():
        assert sampler.last_run is not None
        same = float((outputs[mode] == outputs["none"]).double().mean())
        lines.append(
            f"| {mode} | {args.n / best[mode]:.2f} | {best['none'] / best[mode]:.2f}x | "
            f"{sampler.last_run.nfe.double().mean():.1f} | "
            f"{sampler.last_run.full.double().mean():.1f} | {same:.1%} |"
        )
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
