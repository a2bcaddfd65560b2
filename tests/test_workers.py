"""Trials of several workers (resources.workers): one Ray Train run of the user's own
LightningModule per trial, on CPU with gloo here.

- the spec's new keys and the placement check, before Ray (fast);
- the equivalence: 2 workers at batch b take the same steps as 1 worker at batch 2b (slow);
- an ASHA sweep of 2-worker trials prunes, each trial recording its 2 ranks (slow);
- on a 2-node loopback cluster started with the README's `ray start` commands, a 2-worker trial
  with placement: spread puts one rank on each node (slow).
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import pytest
import ray_nodes
import torch
from finesweep.models.run import TrainingRun
from finesweep.search.cluster import placement
from finesweep.search.spec import ResourcesSpec, SpecError, parse_spec

ROOT = Path(__file__).resolve().parents[1]
# The test model's folder: not on the tests' import path, as a user's module is not.
HERE = ROOT / "tests" / "spread"

# Seed 6: trial 1 draws under half trial 0's learning rate and is worse after its first epoch, so
# ASHA (grace period 1, concurrency 1) stops it at its first rung. Each 2-worker trial is a Ray Train
# run of ~20 s, nearly all start-up: 2 trials show the prune seed 0 showed only in the 4th trial.
SPEC = """\
name: spread
model:
  class_path: spread_models.LinearNet
data:
  class_path: spread_models.LinearData
  init_args: {batch_size: 8}
metric: val_loss
mode: min
space:
  model.lr: {type: float, low: 0.001, high: 0.1, log: true}
strategy: {name: random, seed: 6}
scheduler: {name: asha, options: {grace_period: 1, reduction_factor: 2}}
budget: {trials: 2, max_epochs: 3}
resources: {workers: 2, cpus: 1, concurrency: 1}
"""


def _write(folder: Path, text: str = SPEC) -> Path:
    """The spec beside its model module (workers import the user's modules from the spec's folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "spread_models.py", folder / "spread_models.py")
    path = folder / "spec.yaml"
    path.write_text(text)
    return path


# ---- the spec and the placement check ---------------------------------------------------------

def test_a_spec_without_workers_keeps_one_worker_per_trial(tmp_path):
    spec = parse_spec(_write(tmp_path, SPEC.replace("workers: 2, ", "")))
    assert (spec.resources.workers, spec.resources.strategy, spec.resources.placement) == (1, "ddp", "pack")


def test_workers_strategy_and_placement_are_read(tmp_path):
    spec = parse_spec(_write(tmp_path, SPEC.replace("concurrency: 1", "concurrency: 1, strategy: fsdp, "
                                                                      "placement: spread")))
    assert (spec.resources.workers, spec.resources.strategy, spec.resources.placement) == (2, "fsdp", "spread")


@pytest.mark.parametrize(("edit", "key", "says"), [
    ("workers: 0", "resources.workers", "an integer >= 1"),
    ("workers: 1.5", "resources.workers", "an integer"),
    ("workers: 2, strategy: dpp", "resources.strategy", "did you mean `ddp`"),
    ("workers: 2, placement: spraed", "resources.placement", "did you mean `spread`"),
])
def test_a_bad_worker_setting_is_one_located_problem(tmp_path, edit, key, says):
    with pytest.raises(SpecError) as caught:
        parse_spec(_write(tmp_path, SPEC.replace("workers: 2", edit)))
    (problem,) = caught.value.problems
    assert ".".join(problem.path) == key
    assert problem.line == 14
    assert says in problem.render("spec.yaml")


@pytest.mark.parametrize(("nodes", "workers", "cpus", "gpus", "fits"), [
    ([(2, 0)], 2, 1, 0, True),
    ([(2, 0)], 3, 1, 0, False),
    ([(1, 0), (1, 0)], 2, 1, 0, True),  # one worker on each node
    ([(3, 0), (1, 0)], 3, 1.5, 0, False),  # 1.5 CPUs: two fit on no node, one on the first only
    ([(8, 1), (8, 1)], 2, 1, 1, True),
    ([(8, 1), (8, 0)], 2, 1, 1, False),  # the second node has no GPU
    ([(8, 4)], 4, 2, 1, True),
])
def test_a_trials_workers_fit_when_the_nodes_hold_them_together(nodes, workers, cpus, gpus, fits):
    resources = ResourcesSpec(cpus=cpus, gpus=gpus, workers=workers)
    assert placement.placeable(nodes, resources) is fits


def test_more_workers_than_this_machine_holds_is_a_located_error_before_ray(tmp_path):
    spec = parse_spec(_write(tmp_path, SPEC.replace("workers: 2", "workers: 3")))
    error = placement.check_this_machine(spec, cpus=2, gpus=0)
    (problem,) = error.problems
    assert (problem.path, problem.line) == (("resources", "workers"), 14)
    assert "3 worker(s) of 1 CPU each" in str(error) and "at most 2 such worker(s)" in str(error)
    assert placement.check_this_machine(spec, cpus=4, gpus=0) is None


def test_the_sweep_command_refuses_an_unplaceable_trial_with_exit_2_before_starting_ray(tmp_path):
    spec = _write(tmp_path, SPEC.replace("workers: 2", "workers: 512"))
    done = subprocess.run([sys.executable, "launch.py", "sweep", str(spec), "--out", str(tmp_path / "run"),
                           "--no-dry-run"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "resources.workers" in done.stderr and "512 worker(s)" in done.stderr
    assert "starting Ray" not in done.stdout


def test_a_cluster_that_cannot_hold_the_workers_is_told_with_its_nodes():
    nodes = [{"Alive": True, "NodeManagerAddress": "10.0.0.1", "Resources": {"CPU": 4.0}},
             {"Alive": False, "NodeManagerAddress": "10.0.0.2", "Resources": {"CPU": 4.0}}]
    message = placement.cluster_problem(nodes, ResourcesSpec(cpus=4, workers=2))
    assert "2 worker(s) of 4 CPU each" in message and "10.0.0.1: 4 CPU" in message and "10.0.0.2" not in message
    assert placement.cluster_problem(nodes, ResourcesSpec(cpus=2, workers=2)) is None


# ---- on Ray ---------------------------------------------------------------------------------------

def _run(batch_size: int, order_seed: int | None = None) -> TrainingRun:
    return TrainingRun.from_config(
        {"model": {"class_path": "spread_models.LinearNet", "init_args": {"lr": 0.05}},
         "data": {"class_path": "spread_models.LinearData",
                  "init_args": {"batch_size": batch_size, "order_seed": order_seed}},
         "trainer": {}}, max_epochs=1, seed=3, metric="val_loss", mode="min")


@pytest.mark.slow
def test_two_workers_at_batch_b_train_the_weights_of_one_worker_at_batch_2b(tmp_path, local_ray):
    """DDP averages the two ranks' gradients: with Lightning's distributed sampler (seeded with the
    run's seed, shuffled), one epoch on 2 workers at batch 8 equals one worker at batch 16 reading
    the split in the sampler's permutation, to float rounding."""
    from finesweep.models.training import fit
    from finesweep.search import ray_backend

    sys.path.insert(0, str(HERE))
    try:
        fit(_run(16, order_seed=3), checkpoint_path=tmp_path / "one.pt", threads=1)
    finally:
        sys.path.remove(str(HERE))
    result, ranks = ray_backend.fit_on_workers(
        _run(8), workers=2, cpus=1, checkpoint_path=str(tmp_path / "two.pt"), storage=str(tmp_path / "ray"),
        name="equivalence", import_roots=[str(HERE)])
    assert [r["rank"] for r in ranks] == [0, 1] and result.best_epoch == 1
    one = torch.load(tmp_path / "one.pt", weights_only=True)
    two = torch.load(tmp_path / "two.pt", weights_only=True)
    assert one.keys() == two.keys()
    moved = (one["layer.weight"] - _initial_weight()).abs().max()
    assert moved > 1e-2, "training moved the weights"
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6)


def _initial_weight() -> torch.Tensor:
    import pytorch_lightning as pl

    sys.path.insert(0, str(HERE))
    try:
        import spread_models

        pl.seed_everything(3, verbose=False)
        spread_models.LinearData()
        return spread_models.LinearNet().layer.weight.detach()
    finally:
        sys.path.remove(str(HERE))


@pytest.mark.slow
def test_an_asha_sweep_of_two_worker_trials_prunes_and_records_both_ranks(tmp_path, local_ray):
    from finesweep.search.sweep import run_sweep
    from finesweep.search.views.ensemble import build_ensemble
    from finesweep.search.views.results import load_sweep
    from finesweep.search.views.retrain import retrain
    from finesweep.search.views.robust import robust_export_on_ray
    from finesweep.search.views.status import status_text

    spec = parse_spec(_write(tmp_path / "spec"))
    run_sweep(spec, tmp_path / "run")
    study = optuna.load_study(study_name="spread", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
    states = [t.state for t in study.trials]
    assert len(states) == 2 and optuna.trial.TrialState.PRUNED in states, states
    assert optuna.trial.TrialState.FAIL not in states
    for trial in study.trials:
        assert trial.user_attrs["world_size"] == 2
        assert [r["rank"] for r in trial.user_attrs["ranks"]] == [0, 1]
    # Rank 0 wrote the best trial's weights.
    assert (tmp_path / "run" / "trials" / f"trial_{study.best_trial.number:04d}" / "model.pt").exists()
    assert "2 ranks: rank 0 on 127.0.0.1" in status_text(load_sweep(tmp_path / "run"))

    # The weights rank 0 kept are the trials' own: `ensemble`, evaluating them in one process on the
    # whole validation split, finds the best trial's recorded value (the mean over its 2 ranks).
    ensemble = build_ensemble(load_sweep(tmp_path / "run"), top_k=2)
    assert ensemble.splits["val"]["best_single"]["mse"] == pytest.approx(study.best_value, rel=1e-5)

    # `train` retrains the best config on the sweep's 2 workers (the export records them).
    out = io.StringIO()
    metrics = retrain(tmp_path / "run" / "best.yaml", tmp_path / "retrain", out)
    assert "training on 2 workers" in out.getvalue()
    assert metrics["epochs"] == 3 and (tmp_path / "retrain" / "model.pt").exists()

    # `export --reseed` retrains on the sweep's 2 workers too.
    robust = robust_export_on_ray(load_sweep(tmp_path / "run"), None, top_k=1, reseed=1, out=io.StringIO())
    (config,) = robust.configs
    assert not config.errors and len(config.runs) == 1 and "val_loss" in config.runs[0]


@pytest.mark.slow
def test_a_two_worker_trial_spreads_one_rank_on_each_node_of_a_loopback_cluster(tmp_path):
    folder = Path(tempfile.mkdtemp(prefix="fs-rw-", dir="/tmp"))  # short: Ray puts sockets in it
    try:
        with ray_nodes.cluster(folder, head_cpus=1, workers=[{"cpus": 1}]) as started:
            spec = _write(tmp_path / "spec", SPEC.replace("trials: 2, max_epochs: 3", "trials: 1, max_epochs: 2")
                          .replace("concurrency: 1", "concurrency: 1, placement: spread"))
            done = subprocess.run([sys.executable, "launch.py", "sweep", str(spec), "--out", str(tmp_path / "run"),
                                   "--address", started.address], cwd=ROOT, capture_output=True, text=True,
                                  env=started.env, timeout=400)
            assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
            study = optuna.load_study(study_name="spread", storage=f"sqlite:///{tmp_path / 'run' / 'study.db'}")
            (trial,) = study.trials
            assert trial.state == optuna.trial.TrialState.COMPLETE
            assert trial.user_attrs["world_size"] == 2
            assert {r["node"] for r in trial.user_attrs["ranks"]} == {started.head.node_id,
                                                                       started.workers[0].node_id}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
