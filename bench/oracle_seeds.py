"""The oracle's own error: FD and KID of fixed sets under oracles trained with seeds 0..4.

Every ``oracle`` distance is measured with one trained network; a network trained with another
seed (default ``OracleConfig`` otherwise) is an equally good instrument, so how far a set's
distance moves across oracle seeds is an error that no sampling seed shows. The sets, ``--n``
each, are fixed: held-out real DHS test sequences (the real-vs-real row, drawn as ``evaluate``
draws it), the order-5 Markov chain, the dinucleotide shuffle, uniform DNA, and any ``--samples``
FASTA; each is scored against the reference half of the chr2 test split. Each seed's oracle is
cached under the cache folder, so a rerun trains only the seeds still missing.

    OMP_NUM_THREADS=1 python bench/oracle_seeds.py [--samples S.fasta ...] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
from machine import describe, splice

from d3lm.data.fasta import read_fasta
from d3lm.data.recipes import prepare
from d3lm.data.samples import check_samples
from d3lm.evaluate import baseline_sets, split_reference
from d3lm.metrics.features import OracleFeatures
from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.kernel import kernel_distance
from d3lm.oracle.datasets import equals_shipped
from d3lm.oracle.train import OracleConfig, train_oracle

BASELINES = {"markov": {"k": 5}, "shuffle": {}, "uniform": {}}
BP = 200


def fixed_sets(
    data: Path, n: int, seed: int, samples: list[Path]
) -> tuple[list[str], dict[str, list[str]]]:
    """(reference half of the test split, {set name: sequences}), as ``evaluate`` draws them."""
    table = pd.read_parquet(data, columns=["sequence", "split"])
    test = table.loc[table["split"] == "test", "sequence"].tolist()
    train = table.loc[table["split"] == "train", "sequence"].tolist()
    reference, real = split_reference(test, n, seed)
    sets = {"real": real}
    sets |= baseline_sets(BASELINES, {"train": train, "real": real}, n, BP, seed)
    for path in samples:
        sets[path.stem] = check_samples(path, list(read_fasta(path)))[:n]
    return reference, sets


def spread_table(scores: dict[str, dict[int, float]], seeds: list[int]) -> list[str]:
    """Markdown rows: per set, the value under each oracle seed, mean, std (n - 1), std / mean
    and max - min."""
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [
        f"| set | {head} | mean | std | std / mean | max - min |",
        "|---" * (len(seeds) + 5) + "|",
    ]
    for name, by_seed in scores.items():
        values = [by_seed[s] for s in seeds]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        cells = " | ".join(f"{v:.4g}" for v in values)
        spread = max(values) - min(values)
        summary = f"{mean:.4g} | {std:.2g} | {abs(std / mean):.0%} | {spread:.2g}"
        lines.append(f"| {name} | {cells} | {summary} |")
    return lines


def orders(scores: dict[str, dict[int, float]], seeds: list[int]) -> str:
    """Whether every oracle ranks the sets alike, and the ranking(s) seen."""
    seen = {" < ".join(sorted(scores, key=lambda name: scores[name][s])) for s in seeds}
    word = "the same under every oracle" if len(seen) == 1 else "not the same under every oracle"
    return f"{word}: " + "; ".join(sorted(seen))


def score(
    path: Path, reference: list[str], sets: dict[str, list[str]]
) -> dict[str, tuple[float, float]]:
    """{set: (FD, KID)} under the oracle at ``path``."""
    features = OracleFeatures(checkpoint=path)
    ref = features(reference)
    out = {}
    for name, seqs in sets.items():
        mine = features(seqs)
        out[name] = (frechet_distance(mine, ref), kernel_distance(ref, mine)[0])
    return out


def paired_gaps(scores: dict[str, dict[int, float]], seeds: list[int]) -> list[str]:
    """Markdown rows: for each two sets adjacent by mean, their difference under each oracle seed
    (a table scored with one oracle compares rows under the same network, so this spread, not
    each row's own, says whether the oracle's seed can flip a comparison)."""
    names = sorted(scores, key=lambda name: statistics.fmean(scores[name][s] for s in seeds))
    head = " | ".join(f"seed {s}" for s in seeds)
    lines = [f"| difference | {head} | mean | std | positive |", "|---" * (len(seeds) + 4) + "|"]
    for low, high in itertools.pairwise(names):
        diffs = [scores[high][s] - scores[low][s] for s in seeds]
        cells = " | ".join(f"{d:.3g}" for d in diffs)
        positive = f"{sum(d > 0 for d in diffs)} of {len(diffs)}"
        summary = f"{statistics.fmean(diffs):.3g} | {statistics.stdev(diffs):.2g} | {positive}"
        lines.append(f"| {high} - {low} | {cells} | {summary} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/d3lm"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="two or more")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0, help="seed of the real and baseline draws")
    ap.add_argument("--samples", type=Path, nargs="*", default=[], help="FASTA files to score")
    ap.add_argument("--write", type=Path, help="splice the Markdown into this BENCHMARKS.md")
    args = ap.parse_args()
    args.seeds = list(dict.fromkeys(args.seeds))
    if len(args.seeds) < 2:
        ap.error("a spread needs at least two oracle seeds")
    started = time.perf_counter()
    data = prepare("dhs", args.cache_dir)
    reference, sets = fixed_sets(data, args.n, args.seed, args.samples)
    oracles: list[tuple[int, dict]] = []
    fd: dict[str, dict[int, float]] = {name: {} for name in sets}
    kid: dict[str, dict[int, float]] = {name: {} for name in sets}
    for seed in args.seeds:
        path = train_oracle(data, args.cache_dir, OracleConfig(seed=seed))
        oracles.append((seed, json.loads(path.with_name("oracle.json").read_text())))
        for name, (fd_value, kid_value) in score(path, reference, sets).items():
            fd[name][seed], kid[name][seed] = fd_value, kid_value
        done = ", ".join(f"{name} {fd[name][seed]:.3f}" for name in sets)
        print(f"oracle seed {seed} ({time.perf_counter() - started:.0f} s): FD {done}", flush=True)
    minutes = (time.perf_counter() - started) / 60
    text = "\n".join(report(args, oracles, fd, kid, len(reference), minutes))
    print(text)
    if args.write:
        splice(args.write, "oracle-seeds", text)


def report(
    args: argparse.Namespace,
    oracles: list[tuple[int, dict]],
    fd: dict[str, dict[int, float]],
    kid: dict[str, dict[int, float]],
    n_reference: int,
    minutes: float,
) -> list[str]:
    """The Markdown section: command, machine, the oracles, then FD and KID by set and seed."""
    omp = os.environ.get("OMP_NUM_THREADS")
    command = f"python bench/oracle_seeds.py {shlex.join(sys.argv[1:])}".strip()
    command = f"OMP_NUM_THREADS={omp} {command}" if omp else command
    trained = sum(meta["train_seconds"] for _, meta in oracles) / 60
    seeds = [seed for seed, _ in oracles]
    accuracy = [meta["test_accuracy"] for _, meta in oracles]
    lines = [
        f"`{command}`",
        "",
        f"Machine: {describe('cpu')}. Wall time {minutes:.1f} min; training the {len(seeds)} "
        f"oracles took {trained:.1f} min in all (one thread each, as recorded when each was "
        "trained; a rerun reuses them from the cache).",
        "",
        "| oracle seed | checksum | valid accuracy | test accuracy | train s | shipped |",
        "|---|---|---|---|---|---|",
    ]
    for seed, meta in oracles:
        shipped = {True: "yes", False: "no", None: "none ships"}[
            equals_shipped("dhs", meta["checksum"])
        ]
        lines.append(
            f"| {seed} | `{meta['checksum'][:12]}` | {meta['valid_accuracy']:.4f} | "
            f"{meta['test_accuracy']:.4f} | {meta['train_seconds']} | {shipped} |"
        )
    std = statistics.stdev(accuracy)
    lines += [
        "",
        f"Test accuracy over oracle seeds: mean {statistics.fmean(accuracy):.4f}, std {std:.4f}, "
        f"max - min {max(accuracy) - min(accuracy):.4f}.",
        "",
        f"FD on oracle features, {args.n:,} sequences per set against the {n_reference:,}-sequence "
        "reference half of the chr2 test split (std over oracle seeds, n - 1):",
        "",
        *spread_table(fd, seeds),
        "",
        f"Sets by FD: {orders(fd, seeds)}. Differences of sets adjacent by mean, oracle by oracle:",
        "",
        *paired_gaps(fd, seeds),
        "",
        "KID (unbiased MMD², mean over 100 subsets) on the same features and sets:",
        "",
        *spread_table(kid, seeds),
        "",
        f"Sets by KID: {orders(kid, seeds)}. Differences of sets adjacent by mean:",
        "",
        *paired_gaps(kid, seeds),
    ]
    return lines


if __name__ == "__main__":
    main()
