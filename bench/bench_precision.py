"""Training-step time of a backbone preset in fp32 and under bf16 autocast, on this machine.

bf16 pays off only where the CPU (AVX-512 BF16 / AMX) or GPU multiplies bf16 natively; elsewhere
torch emulates it and it is slower than fp32. Run this before choosing ``trainer.precision``.

    python bench/bench_precision.py --preset tiny --batch 64 --tokens 35
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time

import torch

from d3lm.model import PRESETS, LMHead, NTv2Encoder


def step_seconds(preset: str, batch: int, tokens: int, bf16: bool, repeats: int) -> float:
    cfg = dataclasses.replace(PRESETS[preset])
    encoder, head = NTv2Encoder(cfg), LMHead(cfg)
    params = [*encoder.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    ids = torch.randint(
        6, cfg.vocab_size, (batch, tokens), generator=torch.Generator().manual_seed(0)
    )

    def step() -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            logits = head(encoder(ids))
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), ids.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="tiny", choices=sorted(PRESETS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--tokens", type=int, default=35, help="35 = <cls> + 200 bp in 6-mers")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    fp32 = step_seconds(args.preset, args.batch, args.tokens, False, args.repeats)
    bf16 = step_seconds(args.preset, args.batch, args.tokens, True, args.repeats)
    print(
        f"preset {args.preset}, batch {args.batch} x {args.tokens} tokens, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"fp32 step: {fp32:.3f} s   bf16-autocast step: {bf16:.3f} s   bf16/fp32: {bf16 / fp32:.2f}"
    )


if __name__ == "__main__":
    main()
