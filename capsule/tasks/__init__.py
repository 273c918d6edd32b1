"""Tasks: what a model is for, and how its outputs are scored (see `task`)."""

from capsule.tasks.evaluate import Tally, collapse_of
from capsule.tasks.registry import TASKS, get, task_of
from capsule.tasks.task import Task

__all__ = ["TASKS", "Tally", "Task", "collapse_of", "get", "task_of"]
