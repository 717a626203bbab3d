"""The front page of one scale's results, ``reports/<SCALE>/README.md``.

``make figures`` runs this after the notebooks. It copies each table the notebooks wrote
(caption, table, and the line that gives its n, seeds and intervals) under the command and the
rows that made it, and links the full report (paired differences, power) and the figures. It
reads the reports rather than recomputing them, so the page cannot disagree with them, and it
depends only on ``results/`` through them: rerunning ``make figures`` rewrites it identically.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from tables import grid_file_paths, settings, understanding_file

from d3lm.io import write_text


@dataclass(frozen=True)
class Section:
    """One grid's part of the page: its reports are ``<stem>.md`` and ``<stem>_*.md``."""

    stem: str
    title: str
    paper: str
    rows: str  # results/<rows>-<scale>.csv
    target: str  # the make target that trains, samples and scores it


def sections() -> list[Section]:
    """One section per grid file (experiments/ablations/*.yaml, by name, then the understanding
    grid), titled by the file's ``title`` and ``paper``: a new grid gets its part of the page
    with no edit here."""
    found = []
    for path in [*grid_file_paths(), understanding_file()]:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        grid = path.parent.name == "ablations"
        experiment = spec.get("experiment") or (f"ablation-{path.stem}" if grid else path.stem)
        target = f"ablation-{path.stem}" if grid else f"table-{path.stem}"
        title = spec.get("title", path.stem)
        found.append(Section(path.stem, title, spec.get("paper", ""), experiment, target))
    return found


def table_part(report: str) -> str:
    """The caption, the table and the line under it (n, seeds, intervals) of a notebook report;
    the paired differences and power lines after them stay in the full report."""
    blocks = report.strip().split("\n\n")
    if len(blocks) < 3 or not blocks[1].startswith("|"):
        raise ValueError("a notebook report starts with a caption, a table and its note")
    caption, table, note = blocks[:3]
    return f"{caption}\n\n{table}\n\n{note}"


def links(reports: Path, stem: str) -> str:
    """The section's files that exist: full reports, LaTeX, figures (PNG, with their PDF)."""
    found = sorted(reports.glob(f"{stem}.*")) + sorted(reports.glob(f"{stem}_*.*"))
    parts = [f"[{p.name}]({p.name})" for p in found if p.suffix in (".md", ".tex", ".png")]
    parts += [f"[{p.name}]({p.name})" for p in found if p.suffix == ".pdf"]
    return " · ".join(parts)


def section(results: Path, reports: Path, scale: str, part: Section) -> str:
    rows = results / f"{part.rows}-{scale}.csv"
    paper = f" (paper {part.paper})" if part.paper else ""
    head = f"## {part.title}\n\n`make {part.target} SCALE={scale}`{paper}"
    reports_found = sorted(reports.glob(f"{part.stem}.md")) + sorted(
        reports.glob(f"{part.stem}_*.md")
    )
    if not rows.exists() or not reports_found:
        return f"{head}: no rows in `{rows}` yet."
    rows_link = Path(os.path.relpath(rows, reports)).as_posix()
    tables = [table_part(p.read_text(encoding="utf-8")) for p in reports_found]
    figure = reports / f"{part.stem}.png"
    image = f"\n\n![{part.title}]({figure.name})" if figure.exists() else ""
    body = "\n\n".join(tables)
    files = links(reports, part.stem)
    return f"{head}; rows [{rows.name}]({rows_link}).\n\n{body}{image}\n\nFiles: {files}"


def claims(reports: Path) -> str:
    path = reports / "claims.md"
    if not path.exists():
        return "## Paper claims\n\nNot written yet (`analysis/claims.py`)."
    body = path.read_text(encoding="utf-8").strip().split("\n", 1)[1].strip()
    return f"## Paper claims\n\n{body}"


def page(results: Path, reports: Path, scale: str) -> str:
    intro = (
        f"# Results at `{scale}`\n\n"
        f"Every table of the `{scale}` grids, rebuilt from the rows in `results/` by "
        f"`make figures SCALE={scale}` (this page: `analysis/reports.py`; do not edit it by "
        "hand). A cell is the mean with its 95 % interval over training seeds; the line under "
        "each table gives its n (samples per point), seeds and oracle. A grid's full report "
        "(`<grid>.md`) adds the paired differences against the paper's setting and the power "
        "lines. The commands, run times "
        "and what the tables say are in [docs/ablations.md](../../docs/ablations.md) and "
        "[docs/understanding.md](../../docs/understanding.md)."
    )
    parts = [intro, claims(reports), *(section(results, reports, scale, s) for s in sections())]
    return "\n\n".join(parts) + "\n"


def main() -> Path:
    results, reports, scale = settings()
    path = reports / "README.md"
    write_text(path, page(results, reports, scale))
    return path


if __name__ == "__main__":
    print(main())
