"""A plugin packaged by a third party reaches every command through its entry point.

The package is the README's `center_out` example, made installable the way pip leaves any
package: the module plus a ``*.dist-info`` folder whose ``entry_points.txt`` declares it in the
``d3lm.plugins`` group, on the subprocess's path. Nothing imports it by name."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from d3lm.cli import main
from d3lm.data.fasta import read_fasta

README = Path(__file__).parents[1] / "README.md"


def readme_order_example() -> str:
    section = README.read_text().split("### Adding an unmasking order", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def install_plugin(site: Path) -> None:
    """What `pip install` of a package declaring the entry point leaves on sys.path."""
    (site / "center_out_plugin").mkdir(parents=True)
    (site / "center_out_plugin" / "__init__.py").write_text(readme_order_example())
    info = site / "center_out_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: center-out-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[d3lm.plugins]\ncenter_out = center_out_plugin\n")


@pytest.mark.slow
def test_entry_point_plugin_works_in_sample(tmp_path: Path, dna_table: Path, one_thread) -> None:
    runs = tmp_path / "runs"
    argv = ["train", "--scale", "micro", f"data.dataset={dna_table}", f"runs_dir={runs}"]
    assert main([*argv, "experiment=e", "run=r", "trainer.max_steps=2"]) == 0
    site = tmp_path / "site"
    install_plugin(site)
    out = tmp_path / "center.fa"
    command = [sys.executable, "-m", "d3lm.cli", "sample", str(runs / "e" / "r")]
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    args = ["order=center_out", "--n", "3", "--out", str(out)]
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert [len(s) for _, s in read_fasta(out)] == [60, 60, 60]
    # without the package on the path the same command names the missing plugin
    env["PYTHONPATH"] = ""
    done = subprocess.run([*command, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "unmask_order 'center_out'" in done.stderr
