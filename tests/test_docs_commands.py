"""Every shell command in README.md and docs/ runs as written, or at least parses.

A fenced ``bash`` block in those pages carries an HTML comment on the line before it (invisible
on GitHub) that says how it is checked; a ``bash`` block without one fails
:func:`test_every_shell_block_says_how_it_is_checked`. One command a line, no shell operators.

``<!-- docs-test: run -->``
    every command is run, in order, in one fresh folder per block (so a ``d3lm sample`` finds
    the run its block trained):

    - ``d3lm ...`` runs in this process at the ``micro`` scale on a small made DNA table. Only
      values change (:func:`micro`): ``--scale`` becomes ``micro``, a dataset or reference
      names the made table, sizes, steps and seeds shrink, runs score k-mer features only,
      and ``ablation`` and ``understanding`` get ``--dry-run`` (which checks the grid file and
      builds every point's config and sampler). The subcommand, option names, config keys and
      grid names stay as written.
    - ``make TARGET ...`` runs as ``make -n`` (the target must resolve) and every ``d3lm``
      command that make would run is parsed as below.
    - ``DRY_RUN=1 ... bash SCRIPT ...`` and ``DRY_RUN=1 ... sweeps/slurm/*.sh ...`` run as
      written, and every ``d3lm`` command the script prints is parsed.

``<!-- docs-test: parse, REASON -->``
    for commands that need a GPU, a cluster, a download or hours (REASON says which).
    ``d3lm`` commands are parsed by the command's own argument parser, and the config of a
    ``train`` or ``demo`` command is composed and every plugin it names built; ``make`` as
    above; a SLURM script (``sbatch SCRIPT ARGS`` too) runs its ``DRY_RUN=1``; other programs
    (``python``, ``pip``) are left alone.

So a misspelt subcommand, option, config key, grid, make target or script fails here, and
:func:`test_the_checks_fail_on_broken_commands` keeps it that way.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from d3lm.errors import D3lmError

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL = ("bash", "sh", "shell")
MARKER = re.compile(r"^<!-- docs-test: (run|parse)(?:, (.+?))? -->$")
FENCE = re.compile(r"^```(\w*)")
SCRIPTS = ("sweeps/", "cluster/")  # the repository's SLURM scripts, which all have DRY_RUN=1


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    mode: str | None  # run, parse, or None: not marked
    language: str
    commands: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def commands_of(body: list[str]) -> tuple[str, ...]:
    """One command per line (a trailing backslash continues it); comments and blanks dropped."""
    joined = "\n".join(body).replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        if words:
            out.append(shlex.join(words))
    return tuple(out)


def blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(lines[i - 1]) if i else None
        name = page.relative_to(ROOT).as_posix()
        body = lines[i + 1 : end]
        mode = marker.group(1) if marker else None
        shell = fence.group(1) in SHELL
        found.append(Block(name, i + 1, mode, fence.group(1), commands_of(body) if shell else ()))
        i = end + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]
CHECKED = [b for b in ALL if b.mode]


def test_every_shell_block_says_how_it_is_checked() -> None:
    unmarked = [b.id for b in ALL if b.language in SHELL and not b.mode]
    assert not unmarked, f"bash blocks without <!-- docs-test: run|parse, ... -->: {unmarked}"
    stray = [b.id for b in ALL if b.mode and b.language not in SHELL]
    assert not stray, f"docs-test markers on blocks that are not bash: {stray}"
    assert len([b for b in CHECKED if b.mode == "run"]) >= 5


# ------------------------------------------------------------------------------ the d3lm command


def entry_point() -> Callable[[list[str]], int]:
    """The ``d3lm`` console script's function, found as pip would find it (pyproject.toml)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    target = re.search(r'^d3lm = "([\w.]+):(\w+)"$', text, re.MULTILINE)
    assert target, "pyproject.toml declares no d3lm script"
    return getattr(importlib.import_module(target.group(1)), target.group(2))


def parse(argv: list[str]) -> None:
    """What the command's parser accepts (its ``build_parser``, beside ``main``), with main's
    rule for stray words; a ``train`` or ``demo`` config is composed and its plugins built."""
    module = importlib.import_module(entry_point().__module__)
    parser = module.build_parser()
    args, rest = parser.parse_known_args(argv)
    stray = [r for r in rest if r.startswith("-") or "=" not in r]
    assert not stray and (not rest or hasattr(args, "overrides")), f"stray words: {rest}"
    overrides = [*getattr(args, "overrides", []), *rest]
    if args.command in ("train", "demo") and not any(o.startswith("resume=") for o in overrides):
        from d3lm.config import load_config
        from d3lm.plugins import check_config

        check_config(load_config(args.scale, args.config, overrides))


#: Values a run block's ``d3lm`` options take at micro scale (the option itself is kept).
MICRO_OPTIONS = {
    "--scale": "micro",
    "--seeds": "1",
    "--n": "4",
    "--bp": "60",
    "--n-trials": "2",
    "--workers": "1",
}
#: The same for ``key=value`` words.
MICRO_KEYS = {"trainer.max_steps": "40", "sample.n": "4", "sample.bp": "60"}
TAKES_SCALE = {"train", "demo", "ablation", "understanding"}
TAKES_DATA = {"train", "demo", "ablation", "understanding", "sweep"}


def micro(words: list[str], table: Path) -> list[str]:
    """A run block's ``d3lm`` command at micro scale on ``table``: values only (see the module
    docstring); the subcommand, options, keys and grid names stay as written."""
    out, i = [], 0
    while i < len(words):
        word = words[i]
        key = word.split("=", 1)[0]
        if word in MICRO_OPTIONS and i + 1 < len(words):
            out += [word, MICRO_OPTIONS[word]]
            i += 2
            continue
        if word == "--reference" and i + 1 < len(words):
            out += [word, str(table)]
            i += 2
            continue
        if "=" in word and key in MICRO_KEYS:
            word = f"{key}={MICRO_KEYS[key]}"
        elif key == "data.dataset":
            word = f"data.dataset={table}"
        out.append(word)
        i += 1
    command = out[0] if out else ""
    resumed = any(w.startswith("resume=") for w in out)
    if command in TAKES_SCALE and "--scale" not in out and not resumed:
        out += ["--scale", "micro"]
    if command in TAKES_DATA and not resumed and out[1:2] != ["report"]:
        out.append(f"data.dataset={table}")
    if command in ("demo", "ablation", "understanding", "sweep") and out[1:2] != ["report"]:
        out += [
            "evaluate.features=[kmer]",
            "evaluate.intervals.features=[]",
            "evaluate.motifs=false",
        ]
    if command == "evaluate":
        out += ["--features", "kmer", "--no-motifs", "--no-progress"]
    if command in ("ablation", "understanding"):
        out.append("--dry-run")
    return out


def split_env(words: list[str]) -> tuple[dict[str, str], list[str]]:
    """Leading ``VAR=value`` words of a shell command, and the rest."""
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, value = words[0].split("=", 1)
        env[key] = value
        words = words[1:]
    return env, words


def parse_printed(output: str) -> int:
    """Parse every ``d3lm`` command a dry run printed (``.../d3lm ARGS``, or ``-m MODULE ARGS``
    under torchrun, whose module must exist); the number parsed."""
    count = 0
    for line in output.replace("\\\n", " ").splitlines():
        if not re.search(r"(^|[\s/:])d3lm(\.[\w.]+)? ", line):
            continue
        words = shlex.split(line.split(": ", 1)[1] if line.startswith("task ") else line)
        at = next(k for k, w in enumerate(words) if Path(w).name == "d3lm" or w.startswith("d3lm."))
        if words[at].startswith("d3lm."):
            assert importlib.util.find_spec(words[at]), f"{line}: no module {words[at]}"
        parse(words[at + 1 :])
        count += 1
    return count


def make_dry_run(args: list[str]) -> None:
    done = subprocess.run(
        ["make", "-n", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"make -n {shlex.join(args)}: {done.stderr.strip()}"
    parse_printed(done.stdout)


def script_dry_run(env: dict[str, str], words: list[str]) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    done = subprocess.run(
        words, cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{shlex.join(words)}: {done.stderr.strip()}"
    assert parse_printed(done.stdout), f"{shlex.join(words)} printed no d3lm command"


def check(command: str, mode: str, table: Path) -> None:
    """Run (or parse) one command of a block, in the current folder."""
    words = shlex.split(command)
    operators = [w for w in words if w in ("|", "||", "&", "&&", ";", ">", ">>", "<")]
    assert not operators, f"{command}: one plain command per line, no shell operators"
    env, words = split_env(words)
    program = Path(words[0]).name
    if program == "d3lm":
        if mode == "parse":
            parse(words[1:])
            return
        argv = micro(words[1:], table)
        assert entry_point()(argv) == 0, f"d3lm {shlex.join(argv)} failed"
    elif program == "make":
        make_dry_run(words[1:])
    elif program == "sbatch" or words[0] == "bash" or words[0].startswith(SCRIPTS):
        dry = env.get("DRY_RUN") == "1"
        assert mode == "parse" or dry, f"{command}: a run block runs scripts as DRY_RUN=1 only"
        if program == "sbatch":  # sbatch OPTIONS SCRIPT ARGS: the script's own dry run
            script = next(w for w in words[1:] if not w.startswith("-"))
            words = ["bash", *words[words.index(script) :]]
        script_dry_run({**env, "DRY_RUN": "1"}, words)
    else:
        assert mode == "parse", f"{command}: a run block cannot run {program}"


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dna_table: Path, one_thread) -> Path:
    """A fresh folder with the repository's sweep spaces and grids where the commands expect
    them; fp32 on one thread, as every micro test runs."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("D3LM_FORCE_PRECISION", "32-true")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    for name in ("sweeps", "experiments"):
        (tmp_path / name).symlink_to(ROOT / name)
    return tmp_path


@pytest.mark.parametrize("block", CHECKED, ids=[b.id for b in CHECKED])
def test_documented_commands_run(block: Block, workdir: Path, dna_table: Path) -> None:
    assert block.commands, f"{block.id}: an empty block"
    for command in block.commands:
        check(command, block.mode or "", dna_table)


@pytest.mark.parametrize(
    ("command", "mode"),
    [
        ("d3lm trian --scale tiny", "run"),
        ("d3lm train --scael tiny experiment=x", "run"),
        ("d3lm train --scale tiny trainer.max_stepz=5", "parse"),
        ("d3lm sample runs/none/r1 --samplr random", "parse"),
        ("d3lm ablation no_such_grid --scale tiny", "run"),
        ("make no-such-target", "run"),
        ("DRY_RUN=1 bash cluster/train.sbatch --scael tiny", "run"),
        ("pip download something", "run"),
        ("d3lm plugins | head", "run"),
    ],
)
def test_the_checks_fail_on_broken_commands(
    command: str, mode: str, workdir: Path, dna_table: Path
) -> None:
    """A misspelt subcommand, option, key, grid or target, and a command a run block cannot
    run, fail the check (argparse exits with SystemExit 2; the rest raise or return 2)."""
    with pytest.raises((AssertionError, SystemExit, D3lmError)):
        check(command, mode, dna_table)


def test_the_command_table_names_real_commands() -> None:
    """Every ``make TARGET`` and ``d3lm SUBCOMMAND`` the README's table names exists (targets
    written in capitals, like ``ablation-GRID``, are patterns, checked through one instance)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Commands and make targets", 1)[1].split("\n## ", 1)[0]
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    targets = re.findall(r"`make ([\w-]+)", table)
    subcommands = re.findall(r"`d3lm ([\w-]+)", table)
    assert len(targets) >= 8 and len(subcommands) >= 10
    make_dry_run([t.replace("GRID", "steps") for t in targets])
    module = importlib.import_module(entry_point().__module__)
    parser = module.build_parser()
    for subcommand in subcommands:
        with pytest.raises(SystemExit) as done:
            parser.parse_args([subcommand, "--help"])
        assert done.value.code == 0, subcommand


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (lower case, punctuation dropped, spaces to
    hyphens, ``-1``, ``-2`` ... on repeats)."""
    out, seen, code = set(), {}, False
    for line in page.read_text(encoding="utf-8").splitlines():
        code = code != line.startswith("```")
        heading = None if code else re.match(r"^#+ (.*)", line)
        if heading:
            slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
            out.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
            seen[slug] = seen.get(slug, 0) + 1
    return out


def test_every_link_between_pages_resolves() -> None:
    """The README, docs/ and the reports index link each other by file and heading: moving a
    section must not leave a link behind."""
    broken = []
    for page in [*PAGES, ROOT / "reports" / "tiny" / "README.md"]:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text(encoding="utf-8")):
            path, _, anchor = target.partition("#")
            if target.startswith("http"):
                continue
            dest = (page.parent / path).resolve() if path else page
            if not dest.exists() or (
                anchor and dest.suffix == ".md" and anchor not in anchors(dest)
            ):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken
