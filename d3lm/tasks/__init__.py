"""Labelled tasks for fine-tuning: registered real tasks and users' labelled files."""

from d3lm.tasks import genomic  # noqa: F401  (registers the tasks)
from d3lm.tasks.base import LabelledTable, TaskInfo, load_task

__all__ = ["LabelledTable", "TaskInfo", "load_task"]
