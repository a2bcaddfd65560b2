"""finesweep as users install it: the wheel, built from the sources alone, installed without
extras into a fresh virtual environment (CPU torch first, as scripts/setup.sh does), and run as
`finesweep` from a folder outside the repository on a model of the user's own. A runtime import
missing from `[project.dependencies]` fails here (`make test` installs `.[test]`, which hid
psutil's absence), and so does a module left out of the wheel.

What keeps it near two minutes (measured on the 2-core machine under load, packages from its
local package index): no pip copied into the new environment (`venv --without-pip`; this test's
pip installs into it with `--python`), and no .pyc compiled at install time (`--no-compile`:
torch 55 -> 18 s, the rest 129 -> 45 s); the commands then compile only what they import, once
(PYTHONDONTWRITEBYTECODE, set on CI's machines, is left out of their environment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH = "torch==2.13.0"  # scripts/setup.sh's CPU build

MODEL = '''
"""A small model of someone's own: plain Lightning, no finesweep."""
import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset


class TinyData(pl.LightningDataModule):
    def __init__(self, batch_size: int = 16):
        super().__init__()
        self.batch_size = batch_size

    def setup(self, stage=None):
        g = torch.Generator().manual_seed(0)
        y = torch.randint(0, 3, (180,), generator=g)
        x = torch.randn(3, 6, generator=g)[y] + torch.randn(180, 6, generator=g)
        self.sets = [TensorDataset(x[s], y[s]) for s in (slice(0, 120), slice(120, 150), slice(150, None))]

    def train_dataloader(self):
        return DataLoader(self.sets[0], batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.sets[1], batch_size=64)

    def test_dataloader(self):
        return DataLoader(self.sets[2], batch_size=64)


class TinyNet(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 16, dropout: float = 0.0):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(6, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self(x), y))

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test_loss", F.cross_entropy(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
'''


def _run(command: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    started = time.monotonic()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    print(f"{time.monotonic() - started:6.1f} s  {' '.join(command[:6])}")
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}"
    return done.stdout


@pytest.mark.slow
def test_the_wheel_installed_alone_in_a_fresh_environment_sweeps_a_users_own_model(tmp_path):
    # The wheel from the files a fresh clone has (not from this checkout's build leftovers).
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("search", "models", "callbacks"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    _run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "-w", str(tmp_path / "dist")],
         cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("finesweep-*.whl")

    env_dir = tmp_path / "env"
    try:
        _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp_path)
        install = [sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"), "install", "--quiet",
                   "--no-compile", "--disable-pip-version-check"]
        _run([*install, TORCH], cwd=tmp_path)
        _run([*install, str(wheel)], cwd=tmp_path)

        # A shell with only the new environment: no PYTHONPATH, no Ray settings of this test session.
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE") and not key.startswith("RAY_")}
        env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        work = tmp_path / "work"  # outside the repository
        work.mkdir()
        (work / "mymodel.py").write_text(MODEL)
        where = subprocess.run(["python", "-c", "import finesweep.search.cli as cli; print(cli.__file__)"], cwd=work,
                               env=env, capture_output=True, text=True, timeout=120)
        assert where.stdout.startswith(str(env_dir)), (where.stdout, where.stderr[-2000:])
        importing = "from finesweep.callbacks import ModelCost; print(ModelCost.__name__)"
        callbacks = subprocess.run(["python", "-c", importing],
                                   cwd=work, env=env, capture_output=True, text=True, timeout=120)
        assert callbacks.stdout.strip() == "ModelCost", callbacks.stderr[-2000:]
        no_extras = subprocess.run(["python", "-c", "import pytest"], cwd=work, env=env, capture_output=True)
        assert no_extras.returncode != 0, "the test extras were installed too"

        finesweep = str(env_dir / "bin" / "finesweep")
        assert "sweep" in _run([finesweep, "--help"], cwd=work, env=env)
        assert "image_classification" in _run([finesweep, "tasks"], cwd=work, env=env)
        _run([finesweep, "init", "mymodel.TinyNet", "--data", "mymodel.TinyData", "--out", "spec.yaml"],
             cwd=work, env=env)
        out = _run([finesweep, "sweep", "spec.yaml", "--trials", "2", "--max-epochs", "1", "--out", "run"],
                   cwd=work, env=env)
        assert "trials: COMPLETE 2, PRUNED 0, FAIL 0" in out, out[-3000:]
        assert "trials: COMPLETE 2, PRUNED 0, FAIL 0" in _run([finesweep, "status", "run"], cwd=work, env=env)
        (work / "run" / "best.yaml").unlink()
        assert _run([finesweep, "export", "run"], cwd=work, env=env).split() == ["run/best.yaml"]
        assert (work / "run" / "best.yaml").is_file()
    finally:
        shutil.rmtree(env_dir, ignore_errors=True)  # 1.6 GB: pytest keeps the folders of three sessions
