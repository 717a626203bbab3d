"""Commands that move weights in and out of NT v2 (HuggingFace) folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from d3lm.commands.table import (
    Command,
    arg,
)
from d3lm.io import check_folder, check_not_inputs
from d3lm.rundir import RunDir


def import_nt(args: argparse.Namespace) -> Path:
    from d3lm.interop.nt_v2 import import_nt, write_run

    check_not_inputs({"--out": args.out}, {"the input folder": args.directory})
    check_folder(args.out)
    conditioning = None
    if args.classes:  # NT v2 has no labels: a conditional run starts its condition table fresh
        conditioning = {"name": "label", "params": {"classes": args.classes}}
    return write_run(import_nt(args.directory, conditioning), args.out)


def export_nt(args: argparse.Namespace) -> Path:
    from d3lm.interop.nt_v2 import export_nt
    from d3lm.stages.checkpoints import read_checkpoint

    path = args.checkpoint
    path = path if path.is_file() else RunDir(path).last_checkpoint()
    check_not_inputs({"--out": args.out}, {"the checkpoint": args.checkpoint, "its file": path})
    check_folder(args.out)
    return export_nt(read_checkpoint(path), args.out, args.format, source=path)


COMMANDS: tuple[Command, ...] = (
    Command(
        "import-nt",
        "a local HuggingFace NT v2 folder -> a run folder (d3lm sample reads it)",
        import_nt,
        (
            arg("directory", type=Path, help="config.json, model.safetensors or .bin, vocab.txt"),
            arg("--out", type=Path, required=True, help="the run folder to create"),
            arg(
                "--classes",
                nargs="+",
                metavar="NAME",
                help="a conditional run (conditioning: label) of these classes, its condition "
                "table fresh",
            ),
        ),
    ),
    Command(
        "export-nt",
        "a run or checkpoint -> a HuggingFace NT v2 folder",
        export_nt,
        (
            arg(
                "checkpoint", type=Path, help="run folder (its last checkpoint) or checkpoint file"
            ),
            arg("--out", type=Path, required=True, help="folder for the NT v2 files"),
            arg("--format", choices=["safetensors", "bin"], default="safetensors"),
        ),
    ),
)
