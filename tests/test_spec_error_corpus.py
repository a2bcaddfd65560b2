"""The spec error corpus: the full text of the error for every bad spec of
test_spec_validation.py and for more bad values of the typed sections (budget, resources,
scheduler and strategy options), compared with tests/data/spec_error_corpus.txt.

The file was written by the checker before issue 27 rewrote it (e649633) and held byte for
byte since: a change of wording, order or location shows here as a diff. A deliberate change
regenerates it with ``cd tests && python test_spec_error_corpus.py > data/spec_error_corpus.txt``
and says why in its commit.
"""

from __future__ import annotations

import difflib
import tempfile
from pathlib import Path

from finesweep.search.spec import SpecError, parse_spec
from test_spec_validation import BAD_SPECS, BASE, edit

GOLDEN = Path(__file__).parent / "data" / "spec_error_corpus.txt"

EXTRA = {
 "budget": ["{trials: 0, max_epochs: 2.5, time_limit_s: '1e-3', stop_after_failures: null, trial_timeout_s: true}",
            "{trials: 2.0, max_epochs: '2', time_limit_s: 0, trial_timeout_s: -1, stop_after_failures: -1}",
            "{trials: [1], max_epochs: {a: 1}, time_limit_s: .inf, trial_timeout_s: null, stop_after_failures: 1.5}",
            "{trials: 99999999999999999999, triels: 3}", "7", "{max_epochs: null, trials: abc}"],
 "resources": ["{cpus: 0, gpus: 1.5, concurrency: 0, memory_mb: 0, workers: 2000, strategy: dpp, placement: spred}",
               "{cpus: -1, gpus: -1, concurrency: 2.5, memory_mb: null, workers: 0, strategy: null, placement: 3}",
               "{cpus: '1', gpus: true, concurrency: '2', workers: 1.0, strategy: fsdp, placement: spread}",
               "{gpus: 2, cpus: 0.5}", "{gpus: 0.25, cpus: .nan}"],
 "scheduler": ["{name: asha, options: {reduction_factor: 1, grace_period: 0, brackets: 1.5}}",
               "{name: hyperband, options: {reduction_factor: '3', grace_period: true}}",
               "{name: median, options: {min_samples_required: 0, grace_period: -2}}",
               "{name: asha, options: {reduction_factor: 2.0, grace_period: null}}",
               "{name: none, options: {grace_period: 1}}", "{name: asha, options: {brackets: 2.5e0}}"],
 "strategy": ["{name: local, options: {radius: big, mutation_prob: 2.0, n_startup_trials: true}}",
              "{name: local, options: {radius: -0.1, mutation_prob: '0.5', start_from: 3}}",
              "{name: local, options: {start_from: {dropout: 0.9, nope: 1}}}",
              "{name: genetic, options: {population_size: 1, mutation_prob: x}}",
              "{name: genetic, options: {population_size: 2.5, mutation_prob: 1.5}}",
              "{name: heuristic, options: {population_size: 0, mutation_prob: null}}",
              "{name: annealing, options: {cooling: 1.5, initial_temperature: 0, radius: 0}}",
              "{name: annealing, options: {cooling: yes, initial_temperature: '1', radius: 1}}",
              "{name: auto, options: {switch_after: 0, stall_after: -1}}",
              "{name: auto, options: {switch_after: 2.0, stall_after: 1.5}}",
              "{name: global, options: {n_startup_trials: many, multivariate: 1, gp: 'yes', gp_max_share: 1,"
              " n_ei_candidates: 2.0}}",
              "{name: global, options: {constant_liar: null, gp_max_share: null, n_startup_trials: -3}}",
              "{name: grid}", "{name: random, seed: -1}"],
}
DEFAULTS = {"budget": "{trials: 4, max_epochs: 2}", "resources": "{cpus: 1, gpus: 0, concurrency: 2}",
            "scheduler": "{name: asha, options: {reduction_factor: 3}}", "strategy": "{name: global, seed: 0}"}


def corpus_cases() -> list[tuple[str, str]]:
    cases = [(case.id, case.text) for case in BAD_SPECS]
    for section, texts in EXTRA.items():
        for number, text in enumerate(texts):
            cases.append((f"x_{section}_{number}", edit(f"{section}: {DEFAULTS[section]}", f"{section}: {text}")))
    cases.append(("x_max_failures", BASE + "max_failures: 1.5\ncheckpoints: {keep_best: 0}\n"))
    return cases


def corpus_text() -> str:
    lines = []
    with tempfile.TemporaryDirectory() as folder:
        for case_id, text in corpus_cases():
            path = Path(folder) / "spec.yaml"
            path.write_text(text)
            try:
                spec = parse_spec(path)
                options = dict(spec.strategy.options)
                lines.append(f"{case_id} OK {spec.budget} {spec.resources} {spec.scheduler} {options}")
            except SpecError as error:
                lines.append(f"{case_id} {str(error).replace(folder, 'TMP')}")
            except Exception as error:  # noqa: BLE001 - a crash is a result the corpus records
                lines.append(f"{case_id} CRASH {type(error).__name__} {error}")
    return "\n".join(lines) + "\n"


def test_every_bad_spec_gets_the_same_message_as_before():
    expected, found = GOLDEN.read_text(), corpus_text()
    assert found == expected, "".join(difflib.unified_diff(
        expected.splitlines(keepends=True), found.splitlines(keepends=True), "expected", "found", n=1))


if __name__ == "__main__":
    print(corpus_text(), end="")
