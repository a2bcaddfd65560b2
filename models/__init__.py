"""Training tasks as Lightning modules. Knows nothing of Optuna or Ray: it takes a resolved
config, trains, and calls back once per epoch."""

from finesweep.models.tasks import TASKS, TaskInfo, get_task

__all__ = ["TASKS", "TaskInfo", "get_task"]
