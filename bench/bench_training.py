"""Training-step throughput of the suite against a reference implementation, in one process.

Each case times the suite's step (``DiffusionLM``'s loss, backward, gradient clipping and its
own AdamW) and the same step written the way a HuggingFace user would (``EsmForMaskedLM`` with
rotary positions and SDPA attention, the same masking, ``torch.optim.AdamW`` defaults), steps
interleaved so that a busy machine slows both alike. Utilisation is *model* FLOPs (the dense
forward and backward of each architecture, 6 x matmul parameters per token plus attention,
whatever an implementation skips) per second over the matmul peak measured in the same run.

    python bench/bench_training.py                       # CPU: tiny and nt-v2-50m, 200 and 2048 bp
    python bench/bench_training.py --device cuda --precision bf16-mixed 32-true
    python bench/bench_training.py --scaling --figure reports/bench/training-cost.png
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from machine import describe, matmul_peak, splice, sync

from d3lm.config import load_config, plain
from d3lm.lit.diffusion_lm import DiffusionLM
from d3lm.model import PRESETS, BackboneConfig
from d3lm.registry import TOKENIZERS
from d3lm.tokenizers import kmer  # noqa: F401  (registers nt6mer)

#: (preset, bp, sequences per batch): the issue's cases; 2,048 bp is the paper's promoter length.
CASES = [("tiny", 200, 64), ("tiny", 2048, 8), ("nt-v2-50m", 200, 64), ("nt-v2-50m", 2048, 8)]


def model_flops(cfg: BackboneConfig, tokens: int, length: int, ffn_mats: int) -> float:
    """Dense training FLOPs of one step: 3 x (2 x matmul parameters + attention) per token.
    ``ffn_mats`` is 3 for SwiGLU (gate, up, down) and 2 for a GELU feed-forward."""
    h, f, v = cfg.hidden, cfg.ffn, cfg.vocab_size
    per_layer = 4 * h * h + ffn_mats * h * f
    matmul_params = cfg.n_layers * per_layer + h * h + h * v  # + LM head dense and decoder
    attention = cfg.n_layers * 2 * length * h  # QK^T and AV, per token, multiply-adds
    return 3 * 2 * (matmul_params + attention) * tokens


def suite_step(
    preset: str, ids: torch.Tensor, device: str, precision: str = "32-true"
) -> tuple[Callable[[], None], DiffusionLM]:
    """The suite's step, with the optimiser a Lightning run of ``precision`` would build."""
    cfg = load_config()
    spec = {"preset": preset, "params": {}, "init_output_bias": False}
    lm = DiffusionLM(
        tokenizer={"name": "nt6mer", "params": {}},
        model=spec,
        diffusion=plain(cfg.diffusion),
        optim=plain(cfg.optim),
        max_steps=1000,
    ).to(device)
    lm.trainer = L.Trainer(
        precision=precision,
        accelerator=device.split(":")[0],
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    optimizer = lm.configure_optimizers()["optimizer"]
    step_index = iter(range(10**9))

    def step() -> None:
        seed = next(step_index)
        loss, _, _ = lm._loss(ids, torch.Generator(device=device).manual_seed(seed))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, lm


def reference_step(cfg: BackboneConfig, ids: torch.Tensor, lm: DiffusionLM, device: str):
    """HuggingFace ESM (the architecture NT v2's own code extends), as its users train it."""
    from transformers import EsmConfig, EsmForMaskedLM

    tok = lm.tokenizer
    config = EsmConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.hidden,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.heads,
        intermediate_size=cfg.ffn,
        max_position_embeddings=cfg.max_len + 2,
        position_embedding_type="rotary",
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        pad_token_id=tok.pad_id,
        mask_token_id=tok.mask_id,
        token_dropout=False,
        emb_layer_norm_before=False,
        layer_norm_eps=cfg.layer_norm_eps,
        attn_implementation="sdpa",
    )
    model = EsmForMaskedLM(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=8e-5, betas=(0.9, 0.95))
    maskable = ~lm.special[ids]
    objective = lm.objective
    step_index = iter(range(10**9))

    def step() -> None:
        g = torch.Generator(device=device).manual_seed(next(step_index))
        noisy, masked, _ = objective.noise(ids, maskable, g)
        labels = ids.masked_fill(~masked, -100)
        loss = model(input_ids=noisy, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def dna_batch(n: int, bp: int, device: str) -> torch.Tensor:
    """nt6mer ids of ``n`` random ``bp``-long sequences: one length, so no pads."""
    g = torch.Generator().manual_seed(0)
    seqs = ["".join("ACGT"[i] for i in torch.randint(4, (bp,), generator=g)) for _ in range(n)]
    return TOKENIZERS.build("nt6mer").batch_encode(seqs).to(device)


def timed(steps: dict[str, Callable[[], None]], repeats: int, device: str, autocast) -> dict:
    """Median seconds per step of each, interleaved after two warm-up steps each."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for rep in range(repeats + 2):
        for name, step in steps.items():
            sync(device)
            start = time.perf_counter()
            with autocast():
                step()
            sync(device)
            if rep >= 2:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(args: argparse.Namespace, precision: str, peak: float) -> list[dict]:
    device = args.device
    dtype = torch.bfloat16 if precision == "bf16-mixed" else None

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.split(":")[0], dtype=dtype)

    rows = []
    for preset, bp, n in args.cases:
        torch.manual_seed(0)
        n *= args.batch_scale
        ids = dna_batch(n, bp, device)
        step, lm = suite_step(preset, ids, device, precision)
        cfg = dataclasses.replace(PRESETS[preset], vocab_size=lm.tokenizer.vocab_size)
        steps = {"suite": step}
        if not args.no_reference:
            steps["reference"] = reference_step(cfg, ids, lm, device)
        if args.compile:
            compiled, clm = suite_step(preset, ids, device, precision)
            for layer in clm.encoder.layers[:-1]:  # the last block's shapes vary with the mask
                layer.compile()
            start = time.perf_counter()
            with autocast():
                compiled()
            sync(device)
            compile_s = time.perf_counter() - start
            steps["suite+compile"] = compiled
        seconds = timed(steps, args.repeats, device, autocast)
        tokens, length = ids.numel(), ids.shape[1]
        for name, s in seconds.items():
            flops = model_flops(cfg, tokens, length, 2 if name == "reference" else 3)
            rows.append(
                {
                    "device": device,
                    "precision": precision,
                    "preset": preset,
                    "bp": bp,
                    "batch": f"{n} x {length}",
                    "impl": name,
                    "step_s": s,
                    "tokens_s": tokens / s,
                    "nt_s": n * bp / s,
                    "model_tflops": flops / s / 1e12,
                    "mfu": flops / s / 1e12 / peak,
                    "compile_s": compile_s if name == "suite+compile" else float("nan"),
                }
            )
            print(f"{preset} {bp} bp {precision} {name}: {s:.3f} s/step", flush=True)
        del steps, lm
    return rows


def markdown(rows: pd.DataFrame, peaks: dict[str, tuple[float, int]], command: str, where: str):
    lines = [f"`{command}`", "", f"Machine: {where}.", ""]
    for precision, (tflops, n) in peaks.items():
        lines.append(f"- matmul peak, {precision}: {tflops:.3f} TFLOP/s ({n}^3 product)")
    lines += [
        "",
        "| preset | bp | precision | batch (seq x tokens) | impl | s/step | tokens/s | nt/s "
        "| model TFLOP/s | MFU | suite / reference (FLOP/s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for (preset, bp, precision), group in rows.groupby(["preset", "bp", "precision"], sort=False):
        ref = group.loc[group["impl"] == "reference", "model_tflops"]
        for r in group.itertuples():
            ratio = ""
            if len(ref) and r.impl != "reference":
                ratio = f"{r.model_tflops / ref.iloc[0]:.2f}x"
            extra = "" if pd.isna(r.compile_s) else f" (compile {r.compile_s:.0f} s)"
            lines.append(
                f"| {preset} | {bp} | {precision} | {r.batch} | {r.impl}{extra} | "
                f"{r.step_s:.3f} | {r.tokens_s:,.0f} | {r.nt_s:,.0f} | {r.model_tflops:.3f} | "
                f"{r.mfu:.0%} | {ratio} |"
            )
    return "\n".join(lines)


def scaling_figure(args: argparse.Namespace, path: Path) -> pd.DataFrame:
    """Suite step time per token against sequence length at ~2,700 tokens per batch, per preset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for preset in ("tiny", "nt-v2-50m"):
        for bp in (200, 512, 1024, 2048):
            length = dna_batch(1, bp, args.device).shape[1]
            ids = dna_batch(max(1, 2736 // length), bp, args.device)
            step, _ = suite_step(preset, ids, args.device)
            s = timed({"suite": step}, args.repeats, args.device, contextlib.nullcontext)["suite"]
            per_token = s / ids.numel() * 1e6
            rows.append(
                {"preset": preset, "bp": bp, "tokens": ids.numel(), "us_per_token": per_token}
            )
            print(f"scaling {preset} {bp} bp: {s:.3f} s/step", flush=True)
    frame = pd.DataFrame(rows)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for preset, group in frame.groupby("preset"):
        ax.plot(group["bp"], group["us_per_token"], marker="o", label=preset)
    ax.set(xscale="log", yscale="log", xlabel="sequence length (bp)")
    ax.set(ylabel="training time per token (µs)", title=f"training cost, {args.device}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    return frame


def main() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no per-case trainer banner
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    precisions = ["32-true", "bf16-mixed"]
    ap.add_argument("--precision", nargs="+", default=["32-true"], choices=precisions)
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per implementation")
    ap.add_argument("--batch-scale", type=int, default=1, help="x sequences per batch (GPUs)")
    ap.add_argument("--presets", nargs="+", default=None, help="only these presets' cases")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile'd blocks")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--scaling", action="store_true", help="time per token vs length (figure)")
    ap.add_argument("--figure", type=Path, default=Path("reports/bench/training-cost.png"))
    ap.add_argument("--csv", type=Path, help="write the rows here")
    ap.add_argument("--write", type=Path, help="splice the Markdown into this BENCHMARKS.md")
    ap.add_argument("--section", default="training-cpu", help="marker name for --write")
    args = ap.parse_args()
    args.cases = [c for c in CASES if args.presets is None or c[0] in args.presets]
    where = describe(args.device)
    print(where, flush=True)
    dtypes = {"32-true": torch.float32, "bf16-mixed": torch.bfloat16}
    # both denominators, whichever precisions are timed (emulated bf16 shows here as a low peak)
    peaks = {p: matmul_peak(dtype, args.device) for p, dtype in dtypes.items()}
    if args.device.startswith("cuda") and "32-true" in args.precision:
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here
    rows = []
    for precision in args.precision:
        rows += measure(args, precision, peaks[precision][0])
    frame = pd.DataFrame(rows)
    command = " ".join(["python bench/bench_training.py", *sys.argv[1:]])
    text = markdown(frame, peaks, command, where)
    if args.scaling:
        scale = scaling_figure(args, args.figure)
        text += "\n\nTraining time per token (µs) at about 2,700 tokens per batch "
        wide = scale.pivot(index="bp", columns="preset", values="us_per_token")
        text += f"(figure `{args.figure}`):\n\n| bp | " + " | ".join(wide.columns) + " |\n"
        text += "|---" * (len(wide.columns) + 1) + "|\n"
        text += "\n".join(
            f"| {bp} | " + " | ".join(f"{v:.1f}" for v in r) + " |" for bp, r in wide.iterrows()
        )
    print("\n" + text)
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(args.csv, index=False)
    if args.write:
        splice(args.write, args.section, text)


if __name__ == "__main__":
    main()
