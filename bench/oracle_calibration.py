"""Fréchet distances on the DHS task, against the full chr2 test split (docs/data.md).

Rows: real chr1 validation sequences, the baselines (order-5 Markov chain fitted on train,
dinucleotide-shuffled validation sequences, uniform random), each ``--n`` sequences; columns:
one per feature extractor. Trains (or reuses) the oracle first and prints its accuracy.

    python bench/oracle_calibration.py --cache-dir .cache/d3lm --n 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd

from d3lm.evaluate import baseline_sets
from d3lm.metrics.features import KmerFeatures, OracleFeatures
from d3lm.metrics.frechet import frechet_distance
from d3lm.oracle.datasets import oracle_train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache/d3lm"))
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.time()
    meta = oracle_train("dhs", args.cache_dir)
    print(
        f"oracle: test accuracy {meta['test_accuracy']:.3f}, valid {meta['valid_accuracy']:.3f}, "
        f"trained in {meta['train_seconds']} s (this call {time.time() - started:.0f} s)"
    )
    table = pd.read_parquet(args.cache_dir / "dhs" / "dhs.parquet")
    split = {
        s: table.loc[table["split"] == s, "sequence"].tolist() for s in ("train", "valid", "test")
    }
    valid = pd.Series(split["valid"]).sample(args.n, random_state=args.seed).tolist()
    pools = {"train": split["train"], "real": valid}
    specs = {"markov": {"k": 5}, "shuffle": {}, "uniform": {}}
    sets = {"real (chr1 valid)": valid, **baseline_sets(specs, pools, args.n, 200, args.seed)}
    extractors = {"oracle": OracleFeatures(meta["checkpoint"]), "kmer": KmerFeatures()}
    rows = {}
    for name, extractor in extractors.items():
        reference = extractor(split["test"])
        rows[f"fd_{name}"] = {
            s: frechet_distance(extractor(seqs), reference) for s, seqs in sets.items()
        }
    print(pd.DataFrame(rows).round(3).to_string())
    print(json.dumps({"seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
