"""The guidance notebook on made result rows: the accuracy table with its ceiling (real DNA) and
floor (the unconditional row's class shares), the per-class distance table and the figure."""

from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ANALYSIS = Path(__file__).parents[1] / "analysis"
CLASSES = ["GM12878", "HepG2", "K562", "hESCT0"]
GUIDANCE = ["0", "0.5", "1", "2", "4"]


def made_rows(seeds: int = 3) -> pd.DataFrame:
    """Rows shaped like ``d3lm ablation guidance``: accuracy rising with guidance, diversity
    falling; the unconditional point has class shares only; the real row is the ceiling."""
    rng = np.random.default_rng(0)
    rows = []

    def add(point: str, name: str, guidance: str | None, seed: int, metrics: dict) -> None:
        for metric, value in metrics.items():
            row = {"point": point, "set": name, "guidance": guidance, "seed": seed, "n": 1000}
            rows.append(row | {"metric": metric, "value": value, "oracle": "abc"})

    for seed in range(seeds):
        for i, w in enumerate(GUIDANCE):
            accuracy = 0.4 + 0.08 * i + rng.normal(0, 0.01)
            metrics = {
                "accuracy_oracle": accuracy,
                "accuracy_oracle_lo": accuracy - 0.03,
                "accuracy_oracle_hi": accuracy + 0.03,
                "kid_oracle": 0.002 * (1 + i) + rng.normal(0, 1e-4),
                "fd_oracle": 0.5 * (1 + i) + rng.normal(0, 0.01),
                "mean_hamming": 0.75 - 0.02 * i,
                "nearest_mean": 0.6 - 0.01 * i,
                "fraction_unique": 1.0,
            }
            for c in CLASSES:
                metrics |= {f"accuracy_oracle.{c}": accuracy, f"share_oracle.{c}": 0.25}
                metrics |= {f"kid_oracle.{c}": 0.003 * (1 + i), f"fd_oracle.{c}": 1.0 + i}
            add(f"seed{seed}/guidance-{w}", "generated", w, seed, metrics)
        shares = dict(zip(CLASSES, [0.1, 0.2, 0.3, 0.4], strict=True))
        uncond = {f"share_oracle.{c}": s for c, s in shares.items()}
        uncond |= {"kid_oracle": 0.001, "fd_oracle": 0.4, "mean_hamming": 0.75}
        uncond |= {"nearest_mean": 0.6, "fraction_unique": 1.0}
        add(f"seed{seed}/guidance-uncond", "generated", "uncond", seed, uncond)
        real = {"accuracy_oracle": 0.68, **{f"accuracy_oracle.{c}": 0.68 for c in CLASSES}}
        real |= {"kid_oracle": 0.0, "fd_oracle": 0.3, "mean_hamming": 0.75, "nearest_mean": 0.6}
        real |= {f"kid_oracle.{c}": 0.0 for c in CLASSES} | {"fraction_unique": 1.0}
        add(f"reference-s{seed}", "real", None, seed, real)
        add(f"reference-s{seed}", "markov", None, seed, {"kid_oracle": 0.02, "fd_oracle": 2.0})
    return pd.DataFrame(rows)


def test_guidance_table_has_ceiling_floor_and_figure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("D3LM_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("D3LM_REPORTS", str(tmp_path / "reports"))
    monkeypatch.setenv("SCALE", "micro")
    monkeypatch.syspath_prepend(str(ANALYSIS))
    (tmp_path / "results").mkdir()
    made_rows().to_csv(tmp_path / "results" / "ablation-guidance-micro.csv", index=False)
    runpy.run_path(str(ANALYSIS / "guidance.py"), run_name="__main__")
    reports = tmp_path / "reports" / "micro"
    md = (reports / "guidance.md").read_text()
    table = [line for line in md.split("\n\n")[1].splitlines()[2:]]
    cells = {line.split(" | ")[0].removeprefix("| "): line.split(" | ") for line in table}
    assert list(cells) == [*GUIDANCE, "uncond", "real DNA (held out)", "order-5 Markov"]
    header = md.split("\n\n")[1].splitlines()[0].split(" | ")
    overall = header.index("oracle accuracy (intended class)")
    k562 = header.index("oracle accuracy (intended class) K562")
    # the floor: the unconditional samples' class shares (overall: their mean over classes)
    assert cells["uncond"][k562].startswith("0.3 [") and cells["uncond"][overall].startswith("0.25")
    assert cells["real DNA (held out)"][overall].startswith("0.68")  # the ceiling
    assert cells["4"][overall].startswith("**0.714 [")  # the best accuracy, in bold
    assert "Paired against the reference point **0**" in md
    classes = (reports / "guidance_classes.md").read_text()
    assert "KID oracle ×10³ K562" in classes and "FD oracle hESCT0" in classes
    for suffix in ("png", "pdf"):
        assert (reports / f"guidance.{suffix}").stat().st_size > 1000
