"""`d3lm sample` now against `d3lm sample` at an earlier commit, on one run, in one session.

The earlier code is exported from git (``git archive``) and run from its own folder; each
timing is a whole `d3lm sample` process as a user starts it (imports, loading the checkpoint,
sampling, writing FASTA), alternating old and new so that a busy machine slows both alike.
The FASTA files must be identical: same seed, same sequences.

    python bench/bench_sampling_speedup.py --run runs/demo/RUN
    python bench/bench_sampling_speedup.py      # trains a throwaway tiny run first (~1 min)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import torch
from machine import describe, splice

#: The sampler when issue 12 (speed) was filed: random order, feature cache, sparse last block.
BASELINE = "d55f8db"
ROOT = Path(__file__).resolve().parents[1]


def export(rev: str, into: Path) -> Path:
    """The package and experiment files of ``rev``, as a folder to put on PYTHONPATH."""
    archive = into / "tree.tar"
    with archive.open("wb") as f:
        subprocess.run(["git", "archive", rev, "d3lm", "experiments"], cwd=ROOT, stdout=f,
                       check=True)  # fmt: skip
    with tarfile.open(archive) as tar:
        tar.extractall(into / rev, filter="data")
    return into / rev


def throwaway_run(code: Path, into: Path) -> Path:
    """A `tiny` run trained for 20 steps on the synthetic Markov data by the older ``code`` (so
    both versions read its config): its weights only decide which tokens are drawn, not what a
    step costs."""
    cmd = [sys.executable, "-c", BOOT, str(code), "train", "--scale", "tiny",
           "data.dataset=markov", "experiment=bench", "run=sampling", f"runs_dir={into}",
           "trainer.max_steps=20", "trainer.val_check_interval=20",
           "trainer.enable_progress_bar=false"]  # fmt: skip
    env = {**os.environ, "D3LM_EXPERIMENTS": str(code / "experiments")}
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return into / "bench" / "sampling"


#: `d3lm` from the folder in argv[1]: an editable install's import hook would otherwise win
#: over PYTHONPATH and run the checkout's code for both versions.
BOOT = """import sys
code = sys.argv.pop(1)
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in type(f).__module__]
sys.path.insert(0, code)
from d3lm.cli import main
sys.argv[0] = "d3lm"
sys.exit(main())
"""


def sample(code: Path, run: Path, out: Path, args: argparse.Namespace) -> float:
    """Seconds of one `d3lm sample` process running the package in ``code``."""
    env = {**os.environ, "D3LM_EXPERIMENTS": str(code / "experiments")}
    cmd = [sys.executable, "-c", BOOT, str(code), "sample", str(run), "--sampler", "random",
           "--n", str(args.n), "--bp", str(args.bp), "--out", str(out), "steps=50",
           "temperature=1.1", "sample.progress=false"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def matmul_share(run: Path, n: int, bp: int) -> float:
    """Share of the sampler's CPU time spent in matrix products (one thread, as a worker runs):
    the speed-up left if everything else cost nothing is 1 / share, at the same precision."""
    from torch.profiler import profile

    from d3lm.registry import SAMPLERS
    from d3lm.sampling import NetworkDenoiser
    from d3lm.stages.checkpoints import load_model

    torch.set_num_threads(1)
    model = load_model(run)
    tok = model.tokenizer
    den = NetworkDenoiser(model.encoder, model.head, tok.mask_id, tok.vocab_size)
    sampler = SAMPLERS.build("random", {"temperature": 1.1})
    sampler.sample(den, 8, tok.layout(bp), seed=0)  # warm-up
    with profile() as prof:
        sampler.sample(den, n, tok.layout(bp), seed=0)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    mm = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::addmm"))
    return mm / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, help="a trained run folder (default: a throwaway one)")
    ap.add_argument("--baseline-rev", default=BASELINE)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--bp", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--write", type=Path, help="splice the Markdown into this BENCHMARKS.md")
    ap.add_argument("--profile-n", type=int, default=128, help="sequences profiled for the floor")
    args = ap.parse_args()
    where = describe("cpu")  # before the profile sets one thread
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        old = export(args.baseline_rev, tmp)
        run = args.run or throwaway_run(old, tmp / "runs")
        times: dict[str, list[float]] = {"old": [], "new": []}
        for i in range(args.repeats):
            for name, code in (("old", old), ("new", ROOT)):
                seconds = sample(code, run, tmp / f"{name}-{i}.fasta", args)
                times[name].append(seconds)
                print(f"{name} {i}: {seconds:.1f} s", flush=True)
        outputs = {p.read_bytes() for p in tmp.glob("*.fasta")}
        share = matmul_share(run, args.profile_n, args.bp)
    old_s, new_s = (statistics.median(times[k]) for k in ("old", "new"))
    command = " ".join(["python bench/bench_sampling_speedup.py", *sys.argv[1:]])
    text = "\n".join([
        f"`{command}`",
        "",
        f"Machine: {where}.",
        "",
        f"| `d3lm sample`, {args.n} x {args.bp} bp, random order, T = 50 | seconds (median of "
        f"{args.repeats}) | seq/s |",
        "|---|---|---|",
        f"| at {args.baseline_rev} (issue 12 filed) | {old_s:.1f} | {args.n / old_s:.2f} |",
        f"| now | {new_s:.1f} | {args.n / new_s:.2f} |",
        "",
        f"Speed-up {old_s / new_s:.2f}x; FASTA identical: {'yes' if len(outputs) == 1 else 'NO'}.",
        "",
        f"Matrix products (`aten::mm`, `aten::addmm`) take {share:.0%} of the new sampler's CPU "
        f"time (torch profiler, {args.profile_n} sequences, one thread): at the same precision "
        f"and with identical output, removing everything else would leave at most "
        f"{1 / share:.2f}x over it.",
    ])  # fmt: skip
    print("\n" + text)
    if args.write:
        splice(args.write, "sampling-speedup", text)
    if len(outputs) != 1:
        raise SystemExit("the two versions sampled different sequences")


if __name__ == "__main__":
    main()
