"""Wall time of ``d3lm evaluate`` on 1,000 x 200-bp samples against the DHS test split.

The samples are order-5 Markov draws (no trained model needed). Prints the time of each metric on
the samples alone, then of the whole evaluation (samples + real + three baseline rows), which the
issue requires under a minute on a 2-core CPU for every feature space but ``sei``.

    python bench/bench_metrics.py --cache-dir .cache/d3lm
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from d3lm.baselines import MarkovGenerator
from d3lm.data.fasta import write_fasta
from d3lm.data.recipes import prepare
from d3lm.evaluate import EvaluateOptions, evaluate_fasta
from d3lm.metrics.composition import composition_table
from d3lm.metrics.diversity import diversity
from d3lm.metrics.features import KmerFeatures, OracleFeatures
from d3lm.metrics.frechet import frechet_distance
from d3lm.metrics.motifs import MotifScanner, compare_rates
from d3lm.metrics.novelty import novelty
from d3lm.oracle.datasets import default_oracle


def timed(label: str, fn: Callable[[], object]) -> None:
    started = time.perf_counter()
    fn()
    print(f"{label:<34} {time.perf_counter() - started:7.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/d3lm"))
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    table = pd.read_parquet(prepare("dhs", args.cache_dir))
    train = table.loc[table["split"] == "train", "sequence"].tolist()
    test = table.loc[table["split"] == "test", "sequence"].tolist()
    samples = MarkovGenerator(5).fit(train).sample(args.n, 200, seed=0)
    oracle = OracleFeatures(default_oracle("dhs", args.cache_dir))  # shipped, or trained once
    timed("composition + JS k=1..6", lambda: composition_table({"s": samples}, test, range(1, 7)))
    for name, ex in {"kmer": KmerFeatures(), "oracle": oracle}.items():
        timed(
            f"fd_{name} (incl. reference features)",
            lambda ex=ex: frechet_distance(ex(samples), ex(test)),
        )
    timed("diversity", lambda: diversity(samples))
    timed("novelty vs train split", lambda: novelty(samples, train))
    scanner: list[MotifScanner] = []
    timed("load JASPAR motifs", lambda: scanner.append(MotifScanner()))
    timed(
        "motifs (samples + reference)",
        lambda: compare_rates(scanner[0].rates(test), scanner[0].rates(samples)),
    )
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "samples.fa"
        write_fasta(fasta, ((f"s{i}", s) for i, s in enumerate(samples)))
        timed(
            "evaluate (5 rows, all metrics)",
            lambda: evaluate_fasta(fasta, "dhs", Path(tmp), args.cache_dir, EvaluateOptions()),
        )


if __name__ == "__main__":
    main()
