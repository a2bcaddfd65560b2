"""Several objectives and a constraint on somebody's own Lightning model, end to end: sweep
(real Ray, MO-TPE, MO-ASHA), status, report, export (the Pareto front and a chosen best.yaml),
TensorBoard's HParams columns, and train of a Pareto config. The model logs only its accuracy;
size and latency come from the opt-in ``finesweep.callbacks.ModelCost``."""

from __future__ import annotations

import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import optuna
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = str(ROOT / "launch.py")

MODULE = '''
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class Rings(pl.LightningDataModule):
    """Two noisy concentric rings: a wider or deeper net separates them better."""

    def __init__(self, samples: int = 320, batch_size: int = 32):
        super().__init__()
        self.samples, self.batch_size = samples, batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(1)
        y = torch.randint(0, 2, (self.samples,), generator=g)
        angle = torch.rand(self.samples, generator=g) * 6.2832
        radius = 1.0 + y.float() + 0.35 * torch.randn(self.samples, generator=g)
        x = torch.stack([radius * angle.cos(), radius * angle.sin()], 1)
        cut = int(self.samples * 0.7)
        self.train_set, self.val_set = TensorDataset(x[:cut], y[:cut]), TensorDataset(x[cut:], y[cut:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=16)


class RingNet(pl.LightningModule):
    def __init__(self, width: int = 8, depth: int = 1, lr: float = 0.05):
        super().__init__()
        self.save_hyperparameters()
        layers, size = [], 2
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.Tanh()]
            size = width
        self.net = nn.Sequential(*layers, nn.Linear(size, 2))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_acc", (self(x).argmax(1) == y).float().mean())

    def predict_step(self, batch, batch_idx):
        return self(batch[0])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
'''

SPEC = """\
name: rings
model: {class_path: ringnet.RingNet}
data: {class_path: ringnet.Rings}
trainer:
  callbacks: [{class_path: finesweep.callbacks.ModelCost}]
objectives: {val_acc: max, n_params: min}
constraints: {latency_ms: {max: 1000}, n_params: {max: 600}}
space:
  width: {type: int, low: 1, high: 32, log: true}
  depth: {type: int, low: 1, high: 3}
  lr: {type: float, low: 0.01, high: 0.1, log: true}
strategy: {name: global, seed: 3, options: {n_startup_trials: 4}}
scheduler: {name: asha, options: {reduction_factor: 3, grace_period: 2}}
budget: {trials: 10, max_epochs: 4}
resources: {concurrency: 2}
"""


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, LAUNCH, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=900)


def _record(path: Path) -> dict:
    return yaml.safe_load("\n".join(line[3:] for line in path.read_text().splitlines() if line.startswith("#% ")))


@pytest.mark.slow
def test_two_objectives_and_a_constraint_on_an_own_model(tmp_path):
    folder = tmp_path / "user"
    folder.mkdir()
    (folder / "ringnet.py").write_text(MODULE)
    (folder / "spec.yaml").write_text(SPEC)
    run_dir = tmp_path / "run"

    swept = _cli("sweep", folder / "spec.yaml", "--out", run_dir, cwd=tmp_path)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    study = optuna.load_study(study_name="rings", storage=f"sqlite:///{run_dir / 'study.db'}")
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(trials) == 10 and not [t for t in trials if t.state.name == "FAIL"], swept.stdout
    assert any(t.state.name == "PRUNED" for t in trials), swept.stdout  # MO-ASHA stopped some
    for trial in complete:  # n_params is the net's own count, and the constraint is recorded by Optuna
        width, depth = trial.params["width"], trial.params["depth"]
        count = (2 * width + width) + (depth - 1) * (width * width + width) + (width * 2 + 2)
        assert trial.values[1] == count
        assert trial.constraints["n_params.max"] == count - 600
        assert trial.user_attrs["watched"]["latency_ms"] > 0

    status = _cli("status", run_dir, cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert re.search(r"Pareto front: \d+ of \d+ COMPLETE trials", status.stdout), status.stdout
    assert "export chooses trial" in status.stdout and "knee of the Pareto front" in status.stdout

    reported = _cli("report", run_dir, cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr
    page = (run_dir / "report.html").read_text()
    assert "Pareto front" in page and "Hypervolume over trials" in page
    assert (run_dir / "report" / "pareto_front.png").stat().st_size > 1000

    exported = _cli("export", run_dir, "--select", "{val_acc: max, subject_to: {n_params: {max: 200}}}", cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    assert "chosen by select: the max val_acc on the Pareto front, n_params <= 200" in exported.stderr
    front_files = sorted((run_dir / "pareto").glob("rank_*.yaml"))
    assert front_files and str(run_dir / "best.yaml") in exported.stdout
    front_numbers = [_record(f)["trial"] for f in front_files]
    best = _record(run_dir / "best.yaml")
    assert best["trial"] in front_numbers and best["objectives"]["n_params"] <= 200
    feasible_front = [t for t in complete if t.number in front_numbers]
    assert all(t.values[1] <= 600 for t in feasible_front)  # no infeasible trial on the front
    # No feasible complete trial dominates a front member.
    for member in feasible_front:
        assert not any(o.values[0] >= member.values[0] and o.values[1] <= member.values[1] and o.values != member.values
                       and o.values[1] <= 600 for o in complete)

    # TensorBoard's HParams experiment lists both objectives.
    experiment = next((run_dir / "tensorboard").glob("*.experiment"), None) or next(
        (run_dir / "tensorboard").rglob("*experiment*"))
    assert b"final/val_acc" in experiment.read_bytes() or b"val_acc" in experiment.read_bytes()
    assert b"n_params" in experiment.read_bytes()

    # train (writing pareto/retrain/) and ensemble (writing ensemble.yaml) read the run directory
    # and nothing the other writes: they run at once.
    with ThreadPoolExecutor(2) as pool:
        training = pool.submit(_cli, "train", front_files[0], cwd=tmp_path)
        ensembling = pool.submit(_cli, "ensemble", run_dir, "--top-k", "2", cwd=tmp_path)
        trained, ensembled = training.result(), ensembling.result()
    assert trained.returncode == 0, trained.stdout + trained.stderr
    retrained = float(re.search(r"val_acc (\d+\.\d+) \(sweep: ", trained.stdout).group(1))
    assert retrained == pytest.approx(_record(front_files[0])["value"], abs=1e-4), trained.stdout

    # The trials' kept weights serve an ensemble, and --reseed retrains the best two by the first objective.
    assert ensembled.returncode == 0, ensembled.stdout + ensembled.stderr
    assert "ensemble (mean" in ensembled.stdout
    reseeded = _cli("export", run_dir, "--top-k", "2", "--reseed", "1", cwd=tmp_path)
    assert reseeded.returncode == 0, reseeded.stdout + reseeded.stderr
    assert "Robust best of sweep 'rings'" in (run_dir / "best.yaml").read_text()
    again = _cli("export", run_dir, cwd=tmp_path)  # a later plain export keeps the robust best.yaml
    assert again.returncode == 0 and "best_single.yaml" in again.stdout, again.stdout + again.stderr
    assert "Robust best of sweep 'rings'" in (run_dir / "best.yaml").read_text()


@pytest.mark.slow
def test_an_objective_nothing_logs_is_located_by_the_dry_run(tmp_path):
    (tmp_path / "ringnet.py").write_text(MODULE)
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC.replace("  callbacks: [{class_path: finesweep.callbacks.ModelCost}]\n", "  max_time: null\n"))
    refused = _cli("sweep", spec, "--out", tmp_path / "run", cwd=tmp_path)
    assert refused.returncode == 2, refused.stdout + refused.stderr
    line = SPEC.splitlines().index("objectives: {val_acc: max, n_params: min}") + 1
    assert f"spec.yaml:{line}: objectives.n_params: expected a metric the module logs" in refused.stderr, refused.stderr
    assert "objective 'n_params' was not logged; the module logged: val_acc" in refused.stderr
    assert not (tmp_path / "run").exists()
