"""The BBOB benchmark (benchmarks/bbob.py, benchmarks/bbob_report.py): which run counts at
which budget, the acceptance rules and COCO's ECDF on made-up runs (neither cocoex nor a
sampler needed), and one tiny real run end to end."""

from __future__ import annotations

import gzip
import json

import pytest

from benchmarks.bbob_report import FLOOR, collect, ecdf, regret_at, targets, verdict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_regret_at_reads_the_best_so_far_after_that_many_evaluations():
    curve = [[0, 10.0], [3, 2.0], [39, 0.5], [150, 1e-9]]
    assert regret_at(curve, 1) == 10.0
    assert regret_at(curve, 4) == 2.0
    assert regret_at(curve, 39) == 2.0  # Evaluation index 39 is the 40th: not within 39.
    assert regret_at(curve, 40) == 0.5
    assert regret_at(curve, 200) == 1e-9


def test_budget_aware_arms_count_only_their_own_budgets_run_and_others_read_the_prefix():
    runs = [
        (("NGOpt", 1, 2, 4, 0, 40), [[0, 5.0], [39, 1.0]], 0.1),
        (("NGOpt", 1, 2, 4, 0, 200), [[0, 5.0], [10, 3.0], [199, 1e-12]], 0.1),
        (("auto", 1, 2, 4, 0, 200), [[0, 5.0], [20, 2.0], [100, 0.1]], 0.1),
        (("optuna GP", 1, 2, 4, 0, 40), [[0, 5.0], [30, 0.2]], 0.1),
    ]
    table = collect(runs)
    # Told the budget: its 40-evaluation run counts at 40, not the start of its 200 run (3.0).
    assert table[("NGOpt", 1, 2, 40)] == [1.0]
    assert table[("NGOpt", 1, 2, 200)] == [FLOOR]  # Solved: floored at COCO's final target.
    # finesweep's strategies never read the budget: 40 is read from the start of the 200 run.
    assert table[("auto", 1, 2, 40)] == [2.0] and table[("auto", 1, 2, 200)] == [0.1]
    assert ("optuna GP", 1, 2, 200) not in table and table[("optuna GP", 1, 2, 40)] == [0.2]


def _table(auto: list[float], tpe: list[float], local: list[float], random: list[float]) -> dict:
    table = {}
    for f, (a, t, lo, r) in enumerate(zip(auto, tpe, local, random, strict=True), start=1):
        for budget in (40, 200):
            table[("auto", f, 2, budget)] = [a]
            table[("optuna TPE", f, 2, budget)] = [t]
            table[("local", f, 2, budget)] = [lo]
            table[("optuna random", f, 2, budget)] = [r]
    return table


@pytest.mark.parametrize(("auto", "met", "over", "worst"), [
    ([1.0] * 20 + [1.4] * 4, "yes", False, "1.4 (f21)"),  # 20 of 24 at or below, the rest within 1.5x.
    ([1.0] * 19 + [1.4] * 5, "no", False, "1.4 (f20)"),  # Only 19 of 24.
    ([1.0] * 22 + [1.6, 1.2], "no", True, "1.6 (f23)"),  # One over 1.5x.
])
def test_the_auto_rule_needs_20_of_24_and_1_5x_on_all(auto, met, over, worst):
    arms = ("auto", "optuna TPE", "local", "optuna random")
    lines = targets(_table(auto, [1.0] * 24, [0.5] * 24, [1.0] * 24), (2,), range(1, 25), arms)
    row = next(line for line in lines if line.startswith("| `auto`") and "| 20d = 40 |" in line)
    assert row.split(" | ")[7] == met
    assert ("over 1.5x" in row) is over
    assert row.split(" | ")[5] == worst  # The worst ratio, and on which function.


def test_the_random_rule_is_strictly_below_on_every_function():
    arms = ("auto", "optuna TPE", "local", "optuna random")
    lines = targets(_table([1.0] * 24, [1.0] * 24, [0.5] * 23 + [1.0], [1.0] * 24), (2,), range(1, 25), arms)
    row = next(line for line in lines if line.startswith("| `local`") and "| 100d = 200 |" in line)
    assert "| 23/24 | 24/24 | 1 (f24) | 23 / 1 / 0 | no | f24: 1 / 1, tie |" in row


@pytest.mark.parametrize(("ours", "reference", "expected"), [
    ([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], [2.0, 2.1, 2.2, 2.3, 2.4, 2.5], "win"),
    ([2.0, 2.1, 2.2, 2.3, 2.4, 2.5], [1.0, 1.1, 1.2, 1.3, 1.4, 1.5], "loss"),
    # A lower median, but the middle halves overlap: within the runs' spread.
    ([1.0, 1.5, 1.9, 2.0, 2.6, 3.0], [1.2, 1.8, 2.1, 2.2, 2.8, 3.1], "tie"),
    ([FLOOR] * 6, [FLOOR] * 6, "tie"),  # Both solved.
])
def test_a_verdict_needs_the_interquartile_ranges_to_separate(ours, reference, expected):
    assert verdict(ours, reference) == expected


def test_a_cell_whose_reference_was_not_run_says_so():
    table = _table([1.0] * 24, [1.0] * 24, [0.5] * 24, [1.0] * 24)
    del table[("optuna TPE", 3, 2, 200)]
    for f in range(1, 25):
        table.pop(("optuna TPE", f, 2, 200), None)
    lines = targets(table, (2,), range(1, 25), ("auto", "optuna TPE", "local", "optuna random"))
    row = next(line for line in lines if line.startswith("| `auto`") and "| 100d = 200 |" in line)
    assert "not run" in row


def test_the_ecdf_plot_is_written(tmp_path):
    runs = [(("optuna TPE", f, 2, 4, 0, 200), [[0, 100.0], [50, 1e-3]], 0.1) for f in (1, 2)]
    ecdf(runs, (2,), ("optuna TPE",), tmp_path / "ecdf.png")
    assert (tmp_path / "ecdf.png").read_bytes().startswith(PNG_MAGIC)


def test_a_tiny_bbob_run_writes_its_report_end_to_end(tmp_path):
    """benchmarks/bbob.py for real: COCO's function, the worker pool, two arms, the report.
    cocoex (coco-experiment) is in the optional `bench` extra, not in the test install: without
    it this test is skipped, and only then."""
    pytest.importorskip("cocoex")
    from benchmarks import bbob

    out = tmp_path / "bbob.md"
    bbob.main(["--functions", "1", "--dimensions", "2", "--instances", "4", "--seeds", "1",
               "--multipliers", "2,5", "--arms", "local,optuna random", "--workers", "1", "--out", str(out)])
    with gzip.open(tmp_path / "bbob.json.gz", "rt") as handle:
        data = json.load(handle)
    # One run per arm to the larger budget (10 evaluations); the smaller is read from its start.
    assert sorted(tuple(job) for job, _, _ in data["runs"]) == [("local", 1, 2, 4, 4000, 10),
                                                                 ("optuna random", 1, 2, 4, 4000, 10)]
    for _, curve, _ in data["runs"]:
        regrets = [regret for _, regret in curve]
        assert curve[0][0] == 0 and regrets == sorted(regrets, reverse=True) and regrets[-1] > 0
    text = out.read_text()
    assert "| `local` vs optuna random: < random on all | 2 | 2d = 4 |" in text
    assert "| `local` vs optuna random: < random on all | 2 | 5d = 10 |" in text
    assert "### d = 2: separable" in text and "| local |" in text and "| optuna random |" in text
    assert (tmp_path / "bbob.png").read_bytes().startswith(PNG_MAGIC)


def test_the_optimum_is_the_instances_f_opt():
    """Regret is measured from bbob.optimum: on the sphere f(x) = |x - x_opt|^2 + f_opt, so
    x_opt and f_opt follow from five evaluations, independently of cocoex's file of x_opt."""
    pytest.importorskip("cocoex")  # The bench extra, not in the test install (see above).
    import numpy as np

    from benchmarks import bbob

    fn = bbob.problem(1, 2, 4)
    unit = np.eye(2)
    x_opt = np.array([(fn(-unit[i]) - fn(unit[i])) / 4 for i in range(2)])
    assert bbob.optimum(1, 2, 4) == pytest.approx(fn(np.zeros(2)) - x_opt @ x_opt, abs=1e-9)
