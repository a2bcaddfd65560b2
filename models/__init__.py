"""Training tasks as plain Lightning classes. Knows nothing of Optuna or Ray: a run is a model
and a DataModule named by class path, trained with the Trainer, calling back once per epoch."""

from finesweep.models.tasks import TASKS, TaskAlias, get_task

__all__ = ["TASKS", "TaskAlias", "get_task"]
