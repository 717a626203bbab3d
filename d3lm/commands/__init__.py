"""Every ``d3lm`` command, in the order ``d3lm --help`` lists them (see ``table``)."""

from d3lm.commands import experiments, interop, runs
from d3lm.commands.table import Command

COMMANDS: tuple[Command, ...] = (*runs.COMMANDS, *experiments.COMMANDS, *interop.COMMANDS)
