"""The registry of tasks: the one place that knows which exist. The spec names them
(`task.kind`, a fixed list the spec checks), so there is no entry-point group: a new task is a
module here and a name in `capsule.spec.TASK_KINDS`."""

from __future__ import annotations

from capsule.errors import CapsuleError
from capsule.plugins import Registry
from capsule.spec import Spec
from capsule.tasks.autoencoder import Autoencoder
from capsule.tasks.binary import Binary
from capsule.tasks.multiclass import Multiclass
from capsule.tasks.regression import Regression
from capsule.tasks.task import Task

TASKS: Registry[Task] = Registry("task", None)
for _task in (Multiclass(), Binary(), Regression(), Autoencoder()):
    TASKS.register(_task)


def get(name: str) -> Task:
    found = TASKS.find(name)
    if found is None:
        raise CapsuleError(f"no task {name!r}; known: {', '.join(TASKS.names())}")
    return found


def task_of(spec: Spec) -> Task:
    return get(spec.kind())
