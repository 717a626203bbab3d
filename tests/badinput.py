"""What every table of bad inputs checks (tests/test_bad_inputs*.py): the CLI ends with exit
code 2 and a last stderr line that is its error, no traceback, and the folder of the test's
inputs is left byte for byte as it was. Also what a table and its good twins share: FASTA and
labelled CSV files to run on, and the settings of a micro classifier from random weights."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from d3lm.cli import main


def snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with the SHA-1 of its bytes (folders: empty)."""
    return {
        str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() if p.is_file() else ""
        for p in sorted(root.rglob("*"))
    }


def clear_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    """Run ``d3lm ARGV``; assert exit 2, no traceback and an error line; return that line and
    the whole of stderr."""
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors exit 2 too
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]  # argparse prints its usage lines before it
    assert message.startswith("d3lm") and "error:" in message, err
    return message, err


def write_fasta(path: Path, records: list[tuple[str, str]]) -> None:
    """A FASTA file of (name, sequence) records, one line each."""
    path.write_text("".join(f">{n}\n{s}\n" for n, s in records))


MOTIF = "TGACGTCATGCA"
#: A micro classifier from random weights: nothing to download, seconds to train.
RANDOM_INIT = ("model.preset=micro", "tokenizer.name=kmer", "tokenizer.params.k=3", "pooling=mean")


def labelled(path: Path, n: int, splits: tuple[str, ...] | None, seed: int = 0) -> Path:
    """A CSV of 60-bp records, class c1 holding ``MOTIF``; ``splits``: drawn per record from
    these (None: no split column)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGT"), 60))
        if i % 2:
            seq = seq[:20] + MOTIF + seq[32:]
        row = {"name": f"r{i}", "sequence": seq, "label": f"c{i % 2}"}
        if splits is not None:
            row["split"] = splits[int(rng.integers(len(splits)))]
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)
    return path
