"""The report of benchmarks/bbob.py: targets, a table per BBOB function group, an ECDF plot.

    python -m benchmarks.bbob_report benchmarks/results/bbob.json.gz   # rewrite the report from a run's file
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# BBOB's five groups (Hansen et al. 2009, "Real-parameter black-box optimization benchmarking:
# noiseless functions definitions").
GROUPS = (
    ("separable", range(1, 6)),
    ("low or moderate conditioning", range(6, 10)),
    ("high conditioning, unimodal", range(10, 15)),
    ("multimodal, adequate global structure", range(15, 20)),
    ("multimodal, weak global structure", range(20, 25)),
)
NAMES = {1: "Sphere", 2: "Ellipsoidal", 3: "Rastrigin", 4: "Büche-Rastrigin", 5: "Linear slope",
         6: "Attractive sector", 7: "Step ellipsoidal", 8: "Rosenbrock", 9: "Rosenbrock rotated",
         10: "Ellipsoidal (rot.)", 11: "Discus", 12: "Bent cigar", 13: "Sharp ridge", 14: "Different powers",
         15: "Rastrigin (rot.)", 16: "Weierstrass", 17: "Schaffers F7", 18: "Schaffers F7 cond.",
         19: "Griewank-Rosenbrock", 20: "Schwefel", 21: "Gallagher 101", 22: "Gallagher 21", 23: "Katsuura",
         24: "Lunacek bi-Rastrigin"}
# COCO's final target: regrets below it count as solved, and two solved runs tie.
FLOOR = 1e-8
# COCO's 51 targets for the runtime ECDF: 10^2 down to 10^-8 in steps of 10^0.2.
TARGETS = 10.0 ** np.linspace(2, -8, 51)
# Budgets: these multiples of the dimension (benchmarks/bbob.py --multipliers may change them).
MULTIPLIERS = (20, 100)
# Arms told the budget, so they run once per budget. Every other arm runs once to the largest
# budget and its smaller budgets are read from the start of that run: finesweep's strategies
# decide each trial from the trials so far and never read the sweep's budget.
BUDGET_AWARE = ("NGOpt", "SMAC3")

Run = tuple[Sequence[Any], list[list[float]], float]


def regret_at(curve: list[list[float]], evaluations: int) -> float:
    """The regret after ``evaluations`` evaluations from a curve of [index, regret] improvements."""
    value = curve[0][1]
    for index, regret in curve:
        if index >= evaluations:
            break
        value = regret
    return value


def collect(runs: list[Run], multipliers: Sequence[int] = MULTIPLIERS,
            budget_aware: Sequence[str] = BUDGET_AWARE) -> dict[tuple[str, int, int, int], list[float]]:
    """(arm, function, dim, budget) -> the regret of every run at that budget."""
    table: dict[tuple[str, int, int, int], list[float]] = {}
    for job, curve, _ in runs:
        arm, function, dim, _instance, _seed, trials = job
        for multiplier in multipliers:
            budget = multiplier * dim
            if (arm in budget_aware and trials != budget) or trials < budget:
                continue
            table.setdefault((arm, function, dim, budget), []).append(max(regret_at(curve, budget), FLOOR))
    return table


def median(values: list[float]) -> float:
    return float(np.median(values))


def fmt(value: float) -> str:
    if value <= FLOOR:
        return "<1e-8"
    return f"{value:.2e}" if value < 1e-2 or value >= 1e3 else f"{value:.3g}"


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, mid, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(mid), float(q3)


def verdict(ours: list[float], reference: list[float]) -> str:
    """"win" or "loss" only where the runs' interquartile ranges do not overlap (every run of
    a side's middle half beats every run of the other's); "tie" otherwise, and where both solved."""
    q1, _, q3 = quartiles(ours)
    r1, _, r3 = quartiles(reference)
    if q3 < r1:
        return "win"
    if q1 > r3:
        return "loss"
    return "tie"


def targets(table: dict, dims: Sequence[int], functions: Sequence[int], arms: Sequence[str],
            multipliers: Sequence[int] = MULTIPLIERS) -> list[str]:
    """The issue's acceptance rules, per dimension and budget, read literally on the medians,
    with the wins, ties and losses of the tie rule beside them."""
    lines = ["## Targets", "",
             "The issue's rules, read literally on the median regret over the runs of each function: `auto` at "
             "or below Optuna's default TPE on at least 20 of 24 functions and within 1.5x on all; `local` and "
             "`heuristic` strictly below random search on all. Regrets under 1e-8 count as 1e-8 (solved), so two "
             "solved medians are equal.", "",
             "Wins / ties / losses (the tie rule, fixed before the runs): a win or a loss only where the two arms' "
             "interquartile ranges over the runs do not overlap; otherwise a tie. A literal miss that is a tie is "
             "within the runs' spread.", "",
             "Worst ratio: the largest of ours / reference median over the functions, and where.", "",
             "| rule | dim | budget | holds on (literal) | within 1.5x | worst ratio | wins / ties / losses | met | "
             "misses (ours / reference median, verdict) |", "|---|---|---|---|---|---|---|---|---|"]
    rules = [("auto", "optuna TPE", "<= TPE on 20/24, 1.5x on all")]
    rules += [(arm, "optuna random", "< random on all") for arm in ("local", "heuristic")]
    for ours, reference, rule in rules:
        if ours not in arms or reference not in arms:
            continue
        for dim in dims:
            for multiplier in multipliers:
                budget = multiplier * dim
                cells = [(f, table[(ours, f, dim, budget)], table[(reference, f, dim, budget)]) for f in functions
                         if (ours, f, dim, budget) in table and (reference, f, dim, budget) in table]
                head = f"| `{ours}` vs {reference}: {rule} | {dim} | {multiplier}d = {budget} |"
                if not cells:
                    lines.append(f"{head} not run | - | - | - | - | {reference} was not run to this budget |")
                    continue
                pairs = [(f, median(a), median(b), verdict(a, b)) for f, a, b in cells]
                counts = [sum(v == k for *_, v in pairs) for k in ("win", "tie", "loss")]
                if rule.startswith("<="):
                    holds = [f for f, a, b, _ in pairs if a <= b]
                    within = sum(a <= 1.5 * b for _, a, b, _ in pairs)
                    met = len(holds) >= round(20 / 24 * len(pairs)) and within == len(pairs)
                    misses = [f"f{f}: {fmt(a)} / {fmt(b)}, {v}{' (over 1.5x)' if a > 1.5 * b else ''}"
                              for f, a, b, v in pairs if a > b]
                else:
                    holds = [f for f, a, b, _ in pairs if a < b]
                    within = sum(a <= 1.5 * b for _, a, b, _ in pairs)
                    met = len(holds) == len(pairs)
                    misses = [f"f{f}: {fmt(a)} / {fmt(b)}, {v}" for f, a, b, v in pairs if a >= b]
                record = " / ".join(map(str, counts))
                worst_f, worst_a, worst_b, _ = max(pairs, key=lambda p: p[1] / p[2])
                worst = f"{worst_a / worst_b:.3g} (f{worst_f})"
                lines.append(f"{head} {len(holds)}/{len(pairs)} | {within}/{len(pairs)} | {worst} | {record} | "
                             f"{'yes' if met else 'no'} | {'; '.join(misses) or '-'} |")
    return [*lines, ""]


def ranks(table: dict, dims: Sequence[int], functions: Sequence[int], arms: Sequence[str],
          multipliers: Sequence[int] = MULTIPLIERS) -> list[str]:
    """Geometric mean over functions of each arm's median regret divided by the best arm's."""
    lines = ["## Overall: geometric mean of (median regret / best arm's median regret) over the functions", "",
             "1 = best on every function; lower is better. Arms run only to the smaller budget have no column "
             "at the larger.", "",
             "| arm | " + " | ".join(f"d{d} @ {m}d" for d in dims for m in multipliers) + " |",
             "|---" * (1 + len(dims) * len(multipliers)) + "|"]
    for arm in arms:
        cells = []
        for dim in dims:
            for multiplier in multipliers:
                budget = multiplier * dim
                logs = []
                for f in functions:
                    present = [median(table[(a, f, dim, budget)]) for a in arms if (a, f, dim, budget) in table]
                    if (arm, f, dim, budget) in table:
                        logs.append(np.log(median(table[(arm, f, dim, budget)]) / min(present)))
                cells.append(f"{np.exp(np.mean(logs)):.3g}" if len(logs) == len(functions) else "-")
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def group_tables(table: dict, dims: Sequence[int], functions: Sequence[int], arms: Sequence[str],
                 multipliers: Sequence[int] = MULTIPLIERS) -> list[str]:
    lines = ["## Median regret per function group", "",
             "Each cell: median regret at " + " / at ".join(f"{m} x dim" for m in multipliers)
             + " evaluations over the runs; the best median of a column in bold.", ""]
    for dim in dims:
        for group, members in GROUPS:
            chosen = [f for f in members if f in functions]
            if not chosen:
                continue
            lines += [f"### d = {dim}: {group}", "",
                      "| arm | " + " | ".join(f"f{f} {NAMES[f]}" for f in chosen) + " |",
                      "|---" * (1 + len(chosen)) + "|"]
            best = {}
            for f in chosen:
                for multiplier in multipliers:
                    key = (f, multiplier)
                    values = [median(table[(a, f, dim, multiplier * dim)]) for a in arms
                              if (a, f, dim, multiplier * dim) in table]
                    best[key] = min(values) if values else None
            for arm in arms:
                cells = []
                for f in chosen:
                    parts = []
                    for multiplier in multipliers:
                        key = (arm, f, dim, multiplier * dim)
                        if key not in table:
                            parts.append("-")
                            continue
                        value = median(table[key])
                        text = fmt(value)
                        parts.append(f"**{text}**" if value <= best[(f, multiplier)] else text)
                    cells.append(" / ".join(parts))
                lines.append(f"| {arm} | " + " | ".join(cells) + " |")
            lines.append("")
    return lines


def ecdf(runs: list[Run], dims: Sequence[int], arms: Sequence[str], path: Path,
         largest: int = MULTIPLIERS[-1]) -> None:
    """COCO's runtime ECDF: the fraction of (function, target, run) triples whose target was
    reached, against evaluations / dim (log scale), one panel per dimension."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 4.2), squeeze=False)
    styles = ["-", "--", "-.", ":"]
    for panel, dim in zip(axes[0], dims, strict=True):
        x = np.unique(np.round(np.logspace(0, np.log10(largest * dim), 120)).astype(int))
        for index, arm in enumerate(arms):
            # The longest run of each arm (budget-aware arms: their run to the largest budget).
            curves = [curve for job, curve, _ in runs if job[0] == arm and job[2] == dim
                      and job[5] == max(j[5] for j, _, _ in runs if j[0] == arm and j[2] == dim)]
            if not curves:
                continue
            reached = []
            for curve in curves:
                hits = np.full(len(TARGETS), np.inf)
                for evaluation, regret in curve:
                    hits = np.where((regret <= TARGETS) & np.isinf(hits), evaluation + 1, hits)
                reached.append(hits)
            reached = np.concatenate(reached)
            budget = max(j[5] for j, _, _ in runs if j[0] == arm and j[2] == dim)
            shown = x[x <= budget]
            fraction = [(reached <= e).mean() for e in shown]
            panel.plot(shown / dim, fraction, styles[index // 10 % 4], label=arm, linewidth=1.6)
        panel.set_xscale("log")
        panel.set_ylim(0, 1)
        panel.set_xlabel("evaluations / dimension")
        panel.set_title(f"bbob, d = {dim}, {len({j[1] for j, _, _ in runs})} functions")
        panel.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of (function, target) pairs reached")
    axes[0][-1].legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def spans(numbers: Sequence[int]) -> str:
    """1,2,3,5 -> "1-3, 5"."""
    parts: list[list[int]] = []
    for number in sorted(numbers):
        if parts and number == parts[-1][-1] + 1:
            parts[-1].append(number)
        else:
            parts.append([number])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)


def report(meta: dict[str, Any], runs: list[Run], plot: Path) -> str:
    dims, functions, arms = meta["dimensions"], meta["functions"], meta["arms"]
    # benchmarks/bbob.py records both in the run's meta; the defaults are for a file that does not.
    multipliers = tuple(meta.get("multipliers", MULTIPLIERS))
    budget_aware = tuple(meta.get("budget_aware", BUDGET_AWARE))
    table = collect(runs, multipliers, budget_aware)
    ecdf(runs, dims, arms, plot, multipliers[-1])
    instances = ", ".join(map(str, meta["instances"]))
    kind = "check instances (not tuned on)" if set(meta["instances"]) <= {4, 5} or min(meta["instances"]) > 3 \
        else "development instances" if set(meta["instances"]) <= {1, 2, 3} else "instances"
    lines = [
        "# BBOB: finesweep's strategies against stock and outside samplers", "",
        f"Generated by `{meta['command']}` on {meta['date']} in {meta['seconds']:.0f} s "
        f"({meta['cpu_seconds']:.0f} CPU seconds in the runs: {meta['cpu_seconds'] / 2 / 60:.0f} minutes on 2 idle "
        "cores).", "",
        f"- Versions: {meta['versions']}",
        f"- Machine: {meta['machine']}; {meta['load']}",
        f"- Suite: COCO `bbob` (cocoex), functions {spans(functions)}, dimensions "
        f"{', '.join(map(str, dims))}, {kind} {instances}, {meta['seeds']} run(s) per instance; search space "
        "[-5, 5]^d as continuous parameters; regret = best f - f_opt (noiseless).",
        "- Arms: " + ", ".join(f"`{a}`" for a in arms) + ". Budgets: "
        + ", ".join(f"{m} x dim" for m in multipliers) + ". Arms told the budget ("
        + (", ".join(a for a in budget_aware if a in arms) or "none here") + ") run once per budget; every other "
        "arm runs once to the largest budget and its smaller budgets are read from the start of that run "
        "(finesweep's strategies never read the budget).",
        f"- ECDF plot: {plot.name}.", "",
    ]
    lines += targets(table, dims, functions, arms, multipliers)
    lines += ranks(table, dims, functions, arms, multipliers)
    lines += group_tables(table, dims, functions, arms, multipliers)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0])
    with gzip.open(source, "rt") as handle:
        data = json.load(handle)
    runs = [(tuple(job), curve, seconds) for job, curve, seconds in data["runs"]]
    out = source.with_name(source.name.removesuffix(".json.gz") + ".md")
    out.write_text(report(data["meta"], runs, out.with_suffix(".png")))
    print(out.read_text())


if __name__ == "__main__":
    main()
