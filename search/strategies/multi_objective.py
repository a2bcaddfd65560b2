"""Strategies for several objectives, or for constraints: the Optuna samplers that handle them.

`global` is multi-objective TPE (Ozaki et al. 2022), or Optuna's GP (log EHVI) for the trials
where it pays, as for one objective; `heuristic` (and `genetic`) NSGA-II, or
NSGA-III from three objectives on, where crowding distance stops telling points apart;
`random` and `grid` need nothing of the objectives. Constraints reach TPE and NSGA-II through
Optuna's public ``Trial.set_constraint`` (Optuna 5's replacement of ``constraints_func``): the
driver sets each trial's violations (<= 0 is satisfied) before it tells the study.
The strategies that compare one value (`local`, `annealing`, `auto`) are refused by the spec
check (search/spec/objectives.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import optuna
from finesweep.search.strategies import make_sampler
from finesweep.search.strategies.global_tpe import GlobalSampler, gp_suits

if TYPE_CHECKING:
    from finesweep.search.space import SearchSpace


def make_multi_objective_sampler(name: str, space: SearchSpace, options: Mapping[str, Any], *, objectives: int,
                                 seed: int | None = None) -> optuna.samplers.BaseSampler:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "global":
            multivariate = bool(options.get("multivariate", True))
            startup = int(options.get("n_startup_trials", 8))
            tpe = optuna.samplers.TPESampler(
                n_startup_trials=startup, n_ei_candidates=int(options.get("n_ei_candidates", 24)),
                multivariate=multivariate, group=multivariate and space.is_conditional,
                constant_liar=bool(options.get("constant_liar", True)), seed=seed)
            if not options.get("gp", True) or not gp_suits(space):
                return tpe
            # Optuna's GP takes several objectives (log EHVI) and constraints too; `global` hands
            # it a trial on the same terms as for one objective (see strategies/global_tpe.py).
            process = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, independent_sampler=tpe,
                                                warn_independent_sampling=False)
            return GlobalSampler(tpe, process, n_startup_trials=startup,
                                 max_share=float(options.get("gp_max_share", 0.05)))
        if name in ("heuristic", "genetic"):
            kind = optuna.samplers.NSGAIIISampler if objectives >= 3 else optuna.samplers.NSGAIISampler
            return kind(population_size=int(options.get("population_size", 8)),
                        mutation_prob=options.get("mutation_prob"), seed=seed)
    return make_sampler(name, space, options, seed)
