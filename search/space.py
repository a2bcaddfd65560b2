"""Typed search space: searched parameters, fixed values and conditions between them.

The space is parsed from YAML once (see :mod:`search.spec`); everything after that works
with these objects. Sampling is define-by-run on an Optuna trial so that a conditional
parameter is only suggested when its condition holds, and so stays out of the trial's
parameters (and out of the sampler's model) when it is inactive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    import optuna

# Optuna stores categorical choices natively only for these types.
CategoricalValue = Union[None, bool, int, float, str]

# Shown in place of a conditional parameter that was not active for a trial, so every trial
# has the same columns (TensorBoard HParams, summary tables) without inventing a value.
INACTIVE = "inactive"


@dataclass(frozen=True)
class Condition:
    """Active only when ``parameter`` took one of ``values``."""

    parameter: str
    values: tuple[CategoricalValue, ...]

    def holds(self, sampled: Mapping[str, Any]) -> bool:
        return self.parameter in sampled and sampled[self.parameter] in self.values


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: optuna.Trial) -> float:
        return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)

    def grid_values(self) -> tuple[float, ...] | None:
        if self.step is None:
            return None
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return tuple(round(self.low + i * self.step, 12) for i in range(count))


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: optuna.Trial) -> int:
        return trial.suggest_int(self.name, self.low, self.high, step=self.step, log=self.log)

    def grid_values(self) -> tuple[int, ...] | None:
        return tuple(range(self.low, self.high + 1, self.step))


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[CategoricalValue, ...]
    when: tuple[Condition, ...] = ()

    def suggest(self, trial: optuna.Trial) -> CategoricalValue:
        return trial.suggest_categorical(self.name, list(self.choices))

    def grid_values(self) -> tuple[CategoricalValue, ...]:
        return self.choices


Param = Union[FloatParam, IntParam, CategoricalParam]


def is_active(param: Param, sampled: Mapping[str, Any]) -> bool:
    return all(condition.holds(sampled) for condition in param.when)


@dataclass(frozen=True)
class SearchSpace:
    """Searched parameters in sampling order (every condition's parameter comes first)
    and fixed values that every trial receives unchanged."""

    params: tuple[Param, ...]
    fixed: Mapping[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        raise KeyError(name)

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Suggest every active parameter on ``trial``; inactive ones are left out."""
        sampled: dict[str, Any] = {}
        for param in self.params:
            if is_active(param, sampled):
                sampled[param.name] = param.suggest(trial)
        return sampled

    def active_subset(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The values of ``values`` that are active under their own conditions."""
        kept: dict[str, Any] = {}
        for param in self.params:
            if param.name in values and is_active(param, kept):
                kept[param.name] = values[param.name]
        return kept

    def with_inactive(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """Every searched parameter, inactive ones marked as :data:`INACTIVE`."""
        return {p.name: sampled.get(p.name, INACTIVE) for p in self.params}

    @property
    def is_conditional(self) -> bool:
        return any(p.when for p in self.params)
