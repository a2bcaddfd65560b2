"""Pareto fronts of several objectives, in plain Python: dominance, non-dominated sorting,
crowding distance, hypervolume and the knee point.

Every function takes points in *minimisation form* (each objective to be minimised; a
maximised objective negated by :func:`to_minimise`), so the rest of finesweep converts once
and the geometry here never asks which way an objective goes. Constraint violations follow
Deb's constrained domination (NSGA-II, Optuna's ``constraints_func``): a feasible point
(violation 0) beats an infeasible one, and of two infeasible points the smaller total
violation wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from finesweep.models.run import Direction

Point = Sequence[float]


def to_minimise(values: Sequence[float], modes: Sequence[str]) -> tuple[float, ...]:
    """``values`` with each ``max`` objective negated."""
    return tuple(Direction(m).sort_key(float(v)) for v, m in zip(values, modes, strict=True))


def violation(values: Mapping[str, float], bounds: Mapping[str, Mapping[str, float]]) -> list[float]:
    """One number per constraint, Optuna's convention: <= 0 is satisfied, above 0 by how much
    not. ``bounds``: name -> {max: x} or {min: x}; a value that was not logged violates by inf."""
    out = []
    for name, bound in bounds.items():
        value = values.get(name)
        for side, limit in bound.items():
            if value is None or not math.isfinite(float(value)):
                out.append(math.inf)
            else:
                out.append(float(value) - limit if side == "max" else limit - float(value))
    return out


def total_violation(constraints: Sequence[float] | None) -> float:
    return sum(max(0.0, c) for c in constraints) if constraints else 0.0


def dominates(a: Point, b: Point) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (minimisation)."""
    return all(x <= y for x, y in zip(a, b, strict=True)) and any(x < y for x, y in zip(a, b, strict=True))


def nondominated_ranks(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """The front each point lies on (0: not dominated by any other), by constrained domination
    when ``violations`` (total violation per point) are given."""
    n = len(points)
    bad = list(violations) if violations is not None else [0.0] * n

    def beats(i: int, j: int) -> bool:
        if bad[i] > 0 or bad[j] > 0:
            return bad[i] < bad[j]
        return dominates(points[i], points[j])

    beaten_by = [0] * n
    beats_list: list[list[int]] = [[] for _ in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if beats(i, j):
                beats_list[i].append(j)
                beaten_by[j] += 1
            elif beats(j, i):
                beats_list[j].append(i)
                beaten_by[i] += 1
    ranks = [0] * n
    current = [i for i in range(n) if beaten_by[i] == 0]
    rank = 0
    while current:
        following = []
        for i in current:
            ranks[i] = rank
            for j in beats_list[i]:
                beaten_by[j] -= 1
                if beaten_by[j] == 0:
                    following.append(j)
        current, rank = following, rank + 1
    return ranks


def crowding_distances(points: Sequence[Point]) -> list[float]:
    """NSGA-II's crowding distance of each point within its own set (inf at the extremes):
    the larger, the emptier the neighbourhood, so a tie on rank keeps the spread-out point."""
    n = len(points)
    if n <= 2:
        return [math.inf] * n
    distance = [0.0] * n
    for k in range(len(points[0])):
        order = sorted(range(n), key=lambda i: points[i][k])
        low, high = points[order[0]][k], points[order[-1]][k]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, here, after in zip(order, order[1:], order[2:], strict=False):
            distance[here] += (points[after][k] - points[before][k]) / (high - low)
    return distance


def best_first(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """Indices of ``points`` from best to worst: by non-dominated rank (constrained domination),
    ties broken by crowding distance within the rank (larger first), then by index."""
    ranks = nondominated_ranks(points, violations)
    crowding = [0.0] * len(points)
    for rank in set(ranks):
        members = [i for i, r in enumerate(ranks) if r == rank]
        for i, d in zip(members, crowding_distances([points[i] for i in members]), strict=True):
            crowding[i] = d
    return sorted(range(len(points)), key=lambda i: (ranks[i], -crowding[i], i))


def front(points: Sequence[Point], violations: Sequence[float] | None = None) -> list[int]:
    """Indices of the feasible points no other feasible point dominates."""
    bad = list(violations) if violations is not None else [0.0] * len(points)
    feasible = [i for i in range(len(points)) if bad[i] <= 0]
    return [i for i in feasible if not any(dominates(points[j], points[i]) for j in feasible if j != i)]


def hypervolume(points: Sequence[Point], reference: Point) -> float:
    """The volume dominated by ``points`` and bounded by ``reference`` (minimisation), exact:
    sweeping the first objective and recursing on the rest (fine for the few hundred points
    of a sweep in 2 or 3 objectives). Points not strictly better than the reference in every
    objective add nothing."""
    kept = [tuple(p) for p in points if all(x < r for x, r in zip(p, reference, strict=True))]
    return _volume(kept, tuple(reference))


def _volume(points: list[tuple[float, ...]], reference: tuple[float, ...]) -> float:
    if not points:
        return 0.0
    if len(reference) == 1:
        return reference[0] - min(p[0] for p in points)
    if len(reference) == 2:
        total, best_y = 0.0, reference[1]
        for x, y in sorted(points):
            if y < best_y:
                total += (reference[0] - x) * (best_y - y)
                best_y = y
        return total
    # Slices between consecutive values of the last objective: each slab's volume is its
    # thickness times the (m-1)-dimensional volume of the points below it.
    ordered = sorted(points, key=lambda p: p[-1])
    total = 0.0
    for i, point in enumerate(ordered):
        top = ordered[i + 1][-1] if i + 1 < len(ordered) else reference[-1]
        if top > point[-1]:
            total += (top - point[-1]) * _volume([p[:-1] for p in ordered[:i + 1]], reference[:-1])
    return total


def knee(points: Sequence[Point]) -> int:
    """The index of the knee of a front: with each objective scaled to [0, 1] over the front,
    the point farthest below the hyperplane through the extremes (the smallest sum of scaled
    objectives), where a small loss in one objective buys the most in the others."""
    if not points:
        raise ValueError("the knee of an empty front")
    lows = [min(p[k] for p in points) for k in range(len(points[0]))]
    highs = [max(p[k] for p in points) for k in range(len(points[0]))]

    def scaled_sum(i: int) -> float:
        return sum((x - lo) / (hi - lo) if hi > lo else 0.0 for x, lo, hi in zip(points[i], lows, highs, strict=True))

    return min(range(len(points)), key=lambda i: (scaled_sum(i), i))


def reference_point(points: Sequence[Point], margin: float = 0.1) -> tuple[float, ...]:
    """A reference for the hypervolume of a sweep's own trials: the worst value of each
    objective plus ``margin`` of its range (so the extreme points count too)."""
    m = len(points[0])
    worst = [max(p[k] for p in points) for k in range(m)]
    best = [min(p[k] for p in points) for k in range(m)]
    return tuple(w + margin * ((w - b) or abs(w) or 1.0) for w, b in zip(worst, best, strict=True))
