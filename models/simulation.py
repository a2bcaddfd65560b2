"""Simulated tasks: models whose training is simulated, with neither torch nor Lightning.

A sweep trial trains its model with Lightning (:func:`finesweep.models.training.fit`) unless the
model is a :class:`SimulatedModel`: then the trial calls :meth:`SimulatedModel.simulate`, which
yields each epoch's logged metrics when that epoch ends (sleeping for as long as the simulated
epoch should take). Everything after that is the same as for a trained model: the trial reports
each epoch to the scheduler (ASHA, Hyperband and median stopping end it early as they would a
real one), TensorBoard gets the scalars, and a missing metric or a NaN fails the trial in the
same words. A simulated trial keeps no weights: ``train``, ``ensemble`` and ``export --reseed``
need a real model.

The pair is named in a spec like any model and data (``class_path`` + ``init_args``, checked
against the ``__init__`` signatures): the data side is a :class:`SimulatedData`. The replay task
(:mod:`finesweep.models.replay`) is one: it replays learning curves recorded from real training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from finesweep.models.components import import_class, instantiate
from finesweep.models.run import MetricNotLoggedError, TrainingRun, check_epoch


class SimulatedData:
    """The data side of a simulated task (what a ``LightningDataModule`` is to a real one).
    Its ``__init__`` should be cheap and fail early on a missing file: the spec check builds it."""


class SimulatedModel:
    """A model whose training is simulated. Subclasses implement :meth:`simulate`."""

    def simulate(self, data: SimulatedData, *, seed: int, max_epochs: int) -> Iterator[Mapping[str, float]]:
        """Yield, for epochs 1, 2, ... up to ``max_epochs``, what the model logged in that epoch
        (``{"val_acc": 0.97, "val_loss": 0.11}``), each when the epoch ends. Raising fails the
        trial as a raising training step would; the trial may stop iterating early (pruned)."""
        raise NotImplementedError


def is_simulated(run: TrainingRun) -> bool:
    """Whether ``run``'s model is a :class:`SimulatedModel` (imports the model's module only)."""
    return issubclass(import_class(run.model["class_path"]), SimulatedModel)


def simulate(run: TrainingRun, *, on_epoch_end: Callable[[int, dict[str, float]], None] | None = None
             ) -> list[dict[str, float]]:
    """Run a simulated model as :func:`~finesweep.models.training.fit` trains a real one: every
    epoch's metrics, checked as a trained epoch's are, go to ``on_epoch_end``; returns them all."""
    model = instantiate(run.model["class_path"], run.model.get("init_args") or {})
    data = instantiate(run.data["class_path"], run.data.get("init_args") or {})
    if not isinstance(data, SimulatedData):
        raise TypeError(f"data {run.data['class_path']} is not a SimulatedData, which "
                        f"{run.model['class_path']} (a simulated model) needs")
    history: list[dict[str, float]] = []
    for epoch, logged in enumerate(model.simulate(data, seed=run.seed, max_epochs=run.max_epochs), start=1):
        if epoch > run.max_epochs:
            break
        metrics = {name: float(value) for name, value in logged.items()}
        check_epoch(run.metric, epoch, metrics)
        history.append({"epoch": epoch, **metrics})
        if on_epoch_end is not None:
            on_epoch_end(epoch, metrics)
    if not history:
        raise MetricNotLoggedError(f"the simulation ended without an epoch, so {run.metric!r} has no value")
    return history
