"""Wall seconds per 1,000 sequences of every point of the cost grid (ablations/cost.yaml) on one
trained run, in one process, interleaved, so the ratios compare like with like on this machine;
the quality of the same points, over seeds, is the grid's own table (analysis/cost.py).

    python bench/bench_cost.py RUN_DIR --n 1000 --repeats 3 --write BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

import torch
from machine import describe, splice

from d3lm.experiments.ablation import Plan, load_grid
from d3lm.plugins import load_plugins
from d3lm.rundir import provenance_of
from d3lm.stages.sample import sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a trained run folder of the grid's models")
    ap.add_argument("--scale", default="tiny")
    ap.add_argument("--n", type=int, default=1000, help="sequences per measurement")
    ap.add_argument("--bp", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved runs; the median counts")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--write", type=Path, help="splice the table into this Markdown file")
    ap.add_argument("--section", default="sampling-cost", help="marker name for --write")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    load_plugins()
    grid = load_grid("cost", seeds=1)
    overrides = [
        f"runs_dir={args.run.parent.parent}",
        f"sample.n={args.n}",
        f"sample.bp={args.bp}",
        "sample.workers=1",
        "sample.progress=false",
    ]
    plan = Plan(grid, args.scale, overrides)
    (train, seed), points = grid.train_points()[0], grid.sample_points()
    seconds: dict[str, list[float]] = {p.name: [] for p in points}
    nfe: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for point in points:
                out = Path(tmp) / f"{point.name}.fasta"
                sample(plan.config(train, seed, point), args.run, out=out)
                info = json.loads(provenance_of(out).read_text())
                seconds[point.name].append(info["wall_s"] * 1000 / args.n)
                nfe[point.name] = info["nfe_mean"]
    exact = statistics.median(seconds[points[0].name])
    lines = [
        f"`python bench/bench_cost.py {args.run} --n {args.n} --bp {args.bp} "
        f"--repeats {args.repeats}` "
        f"on {describe('cpu')}; {args.bp} bp, one process, median of {args.repeats} "
        "interleaved runs.",
        "",
        "| point | s / 1,000 sequences | speed-up vs exact | network calls / sequence |",
        "|---|---|---|---|",
    ]
    for point in points:
        median = statistics.median(seconds[point.name])
        lines.append(
            f"| {point.labels['config']} | {median:.1f} | {exact / median:.2f}x | "
            f"{nfe[point.name]:.1f} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.write:
        splice(args.write, args.section, text)


if __name__ == "__main__":
    main()
