"""The ``d3lm`` command: the table of commands (:mod:`d3lm.commands`) as an argparse parser.

Nothing here knows a command: each row of the table gives its name, help, arguments and the
function that calls the stages. Common to all: ``key=value`` overrides may follow options,
an input error (:class:`D3lmError`) is one line and exit code 2 (``--debug``: the traceback),
and SIGTERM/SIGINT stop with one line saying how to continue (exit 143/130).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from d3lm.commands import COMMANDS
from d3lm.errors import D3lmError
from d3lm.interrupt import Interrupted, signals
from d3lm.plugins import load_plugins


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="d3lm", description="Masked discrete-diffusion DNA language models (D3LM)."
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an input error too"
    )
    top = parser.add_subparsers(dest="command", required=True)
    groups: dict[str, argparse._SubParsersAction] = {}
    for command in COMMANDS:
        group, _, name = command.name.rpartition(" ")
        where = top
        if group:  # `data prepare`: a command under a group
            if group not in groups:
                groups[group] = top.add_parser(group, help=command.group_help).add_subparsers(
                    dest="action", required=True
                )
            where = groups[group]
        p = where.add_parser(name, help=command.help)
        for arg in command.args:
            p.add_argument(*arg.flags, **arg.options)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # key=value overrides may follow options (argparse alone would stop at the first option)
    args, rest = parser.parse_known_args(argv)
    stray = [r for r in rest if r.startswith("-") or "=" not in r]
    if stray or (rest and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(stray or rest)}")
    if rest:
        args.overrides = [*args.overrides, *rest]
    try:
        with signals():  # SIGTERM and SIGINT raise Interrupted
            load_plugins()  # entry-point plugins for every command, not just `d3lm plugins`
            shown = args.func(args)
            if shown is not None:
                print(shown)
    except D3lmError as err:
        if args.debug:
            raise
        print(f"d3lm: error: {err}", file=sys.stderr)
        return 2
    except Interrupted as err:
        again = ["d3lm", *(sys.argv[1:] if argv is None else argv), *err.extra]
        print(f"d3lm: {err}; to continue: {shlex.join(again)}", file=sys.stderr)
        return err.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
