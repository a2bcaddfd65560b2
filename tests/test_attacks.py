"""A run directory is data: attacks on finesweep's commands through the files they read.

Every case runs the real command line (``launch.py``, a fresh process, so imports and
``sys.path`` are as a user gets them) on a run directory built here: a real Optuna study in
SQLite with three finished trials, the spec copy, and booby traps beside them. ``evilmod.py``,
``optuna.py``, ``matplotlib.py`` and ``yaml.py`` each append their name to ``ran.txt`` when
imported, in the run directory and in the spec folder, and the spec copy names
``evilmod.M``. A process that is not Ray's but carries ``RAY_RAYLET_PID`` in its environment
stands by as the victim of a crafted ``ray_session.json``.

Each case of the table checks the exit code, that the error is one line (no traceback), that
nothing ran (``ran.txt`` absent), that nothing outside the command's own outputs was written and
that the victim is alive. The views are also run from several working directories, the run
directory itself included.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import optuna
import psutil
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
LAUNCH = str(ROOT / "launch.py")
TRAPS = ("evilmod", "optuna", "matplotlib", "yaml")
PARAMS = {"lr": optuna.distributions.FloatDistribution(1e-3, 1e-1, log=True),
          "units": optuna.distributions.IntDistribution(2, 32)}


@dataclass
class Run:
    """The paths of one attack: a run directory, a spec folder, a neutral folder, the marker."""

    root: Path
    run: Path
    spec: Path
    other: Path
    marker: Path
    victim: subprocess.Popen | None = None
    extra: dict[str, Path] = field(default_factory=dict)

    def ran(self) -> list[str]:
        return self.marker.read_text().split() if self.marker.exists() else []


def plant(folder: Path, marker: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in TRAPS:
        (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'a').write({name!r} + '\\n')\nclass M: pass\n")


def config(class_path: str = "evilmod.M") -> dict:
    return {"model": {"class_path": class_path, "init_args": {"lr": 0.01}},
            "data": {"class_path": "evilmod.D", "init_args": {}}, "trainer": {}}


SPEC_COPY = """\
#% spec_dir: {spec}
name: attack
model:
  class_path: evilmod.M
  init_args: {{}}
data:
  class_path: evilmod.D
metric: val_acc
mode: max
space:
  lr: {{type: float, low: 0.001, high: 0.1, log: true}}
  units: {{type: int, low: 2, high: 32}}
budget: {{trials: 3, max_epochs: 2}}
resources: {{cpus: 1, concurrency: 1}}
"""


def build_run(root: Path) -> Run:
    """A finished run directory as a sweep leaves it, booby-trapped, without running a sweep."""
    attack = Run(root, root / "run", root / "spec", root / "other", root / "ran.txt")
    plant(attack.run, attack.marker)
    plant(attack.spec, attack.marker)
    attack.other.mkdir()
    text = SPEC_COPY.format(spec=attack.spec)
    (attack.run / "spec.yaml").write_text(text)
    os.chmod(attack.run / "spec.yaml", 0o600)
    (attack.run / "tensorboard").mkdir()
    storage = optuna.storages.RDBStorage(f"sqlite:///{attack.run / 'study.db'}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="attack", storage=storage, direction="maximize")
    study.set_user_attr("metric", "val_acc")
    study.set_user_attr("seed_base", 7)
    study.set_user_attr("spec_copies", [hashlib.sha256(text.encode()).hexdigest()])
    for number, (lr, units, value) in enumerate([(0.01, 8, 0.9), (0.02, 16, 0.8), (0.05, 4, 0.7)]):
        study.add_trial(optuna.trial.create_trial(
            params={"lr": lr, "units": units}, distributions=PARAMS, value=value,
            intermediate_values={1: value - 0.1, 2: value},
            user_attrs={"config": config(), "seed": 7 + number, "best_epoch": 2, "epochs": 2}))
    storage.engine.dispose()
    return attack


@pytest.fixture
def attack(tmp_path):
    built = build_run(tmp_path)
    # Not Ray's, but its environment names a "raylet" that ray_session.json records.
    built.victim = subprocess.Popen(["sleep", "600"], env={**os.environ, "RAY_RAYLET_PID": "40001"})
    yield built
    built.victim.kill()
    built.victim.wait()


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    files = {}
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                stat = path.stat()
                files[str(path)] = (stat.st_size, stat.st_mtime_ns)
    return files


def cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
        entry: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(entry or [sys.executable, LAUNCH]), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, **(env or {})})


def dead_pid() -> tuple[int, float]:
    process = subprocess.Popen(["true"])
    started = psutil.Process(process.pid).create_time() if psutil.pid_exists(process.pid) else time.time()
    process.wait()
    return process.pid, started


def crafted_session(attack: Run, **changes: object) -> None:
    driver, started = dead_pid()
    victim = attack.victim.pid
    record = {"host": socket.gethostname(), "driver": driver, "driver_started": started,
              "session_dir": "/tmp/ray/session_crafted",
              "processes": {str(victim): psutil.Process(victim).create_time(), "40001": 1.0}}
    record.update(changes)
    (attack.run / "ray_session.json").write_text(json.dumps(record))


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new, 1))


def best_yaml(attack: Run, record_changes: dict | None = None, folder: Path | None = None,
              run_config: dict | None = None) -> Path:
    """An export as `export` writes it, its `#%` record changed as an attacker would (a None
    value removes the line)."""
    record = {"finesweep_export": 2, "sweep": "attack", "task": "M", "metric": "val_acc", "mode": "max",
              "value": 0.9, "best_epoch": 2, "trial": 0, "rank": 1, "params": {"lr": 0.01, "units": 8},
              "threads": 1, "spec_dir": str(attack.spec),
              "checkpoint": str(attack.run / "trials" / "trial_0000" / "model.pt")}
    record.update(record_changes or {})
    record = {key: value for key, value in record.items() if value is not None}
    lines = "\n".join("#% " + line for line in yaml.safe_dump(record, sort_keys=False).splitlines())
    run = run_config or config()
    body = {"seed_everything": 7, "trainer": {**run.get("trainer", {}), "max_epochs": 1},
            "model": run["model"], "data": run["data"]}
    path = (folder or attack.run) / "best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(lines + "\n" + yaml.safe_dump(body, sort_keys=False))
    return path


class Evil:
    """Unpickling this runs a shell command: a checkpoint made of it must never be unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"echo pickle >> {self.marker}",))


def crafted_pickle(path: Path, marker: Path) -> Path:
    """A file in torch.save's own format whose pickle runs code when loaded without weights_only."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"weight": Evil(marker)}, path)
    return path


USER_MODULE = '''
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset


class Data(pl.LightningDataModule):
    def __init__(self, hang: bool = False):
        super().__init__()
        while hang:  # a DataModule that waits forever for something
            time.sleep(0.1)

    def val_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(8, 2), torch.randint(0, 2, (8,))), batch_size=4)

    train_dataloader = val_dataloader


class Net(pl.LightningModule):
    def __init__(self, lr: float = 0.1):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def training_step(self, batch, batch_idx):
        return torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1])

    def validation_step(self, batch, batch_idx):
        self.log("val_loss", torch.nn.functional.cross_entropy(self.layer(batch[0]), batch[1]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.hparams.get("lr", 0.1))
'''

USER_SPEC = """\
name: mine
model: {{class_path: {model}}}
data: {{class_path: {data}, init_args: {{hang: {hang}}}}}
metric: {metric}
mode: min
space:
  model.lr: {{type: float, low: 0.01, high: 0.1}}
budget: {{trials: {trials}, max_epochs: 1}}
resources: {{cpus: 1, concurrency: 2}}
"""


def user_spec(attack: Run, name: str = "mine.yaml", model: str = "mymodel.Net", data: str = "mymodel.Data",
              hang: bool = False, trials: int = 1, metric: str = "val_loss") -> Path:
    """A spec of the user's own model in the (booby-trapped) spec folder."""
    (attack.spec / "mymodel.py").write_text(USER_MODULE)
    path = attack.spec / name
    path.write_text(USER_SPEC.format(model=model, data=data, hang=str(hang).lower(), trials=trials, metric=metric))
    return path


def debug_config() -> dict:
    return {"model": {"class_path": "finesweep.models.debug.DebugClassifier", "init_args": {"learning_rate": 0.05}},
            "data": {"class_path": "finesweep.models.debug.DebugData", "init_args": {}}, "trainer": {}}


def ensemble_yaml(attack: Run, checkpoint: Path | str) -> Path:
    path = attack.run / "ensemble.yaml"
    path.write_text(yaml.safe_dump({
        "finesweep_ensemble": 1, "sweep": "attack", "spec_dir": str(attack.spec), "metric": "val_acc",
        "mode": "max", "members": [{"trial": 0, "rank": 1, "checkpoint": str(checkpoint), "config": debug_config()}]}))
    return path


def full_disk(attack: Run, *args: str) -> list[str]:
    """``launch.py args`` in a private mount namespace where ``attack.root/full`` is a full 64 KiB
    tmpfs; what the folder holds afterwards is listed in ``full.txt``. (Spelled as arguments of
    the `entry` below: the table's cases give only arguments.)"""
    attack.extra["full"] = attack.root / "full"
    attack.extra["full"].mkdir()
    return list(args)


FULL_ENTRY = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
              'mount -t tmpfs -o size=64k tmpfs "$0" && head -c 65536 /dev/zero > "$0/fill"; '
              '"$@"; code=$?; rm "$0/fill"; ls -A "$0" > "$0.txt"; exit $code']


def can_fill_a_disk() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@dataclass(frozen=True)
class Case:
    name: str
    setup: Callable[[Run], list[str]]  # makes the attack, returns the command's arguments
    exit: int
    message: str  # in the error line (or, for exit 0, in the output)
    cwd: str = "other"  # run, spec or other: where the command is started
    writes: tuple[str, ...] = ()  # what the command may write or remove, relative to the root
    env: tuple[tuple[str, str], ...] = ()
    lines: int = 1  # lines on stderr (a spec problem is listed under a header line)
    hidden: tuple[str, ...] = ()  # never in the output (passwords)
    full_disk: bool = False


def _session(attack: Run, **changes: object) -> list[str]:
    crafted_session(attack, **changes)
    return ["clean", str(attack.run)]


def _copy(attack: Run, old: str, new: str, command: str = "status") -> list[str]:
    edit(attack.run / "spec.yaml", old, new.format(root=attack.root))
    return [command, str(attack.run)]


def _train(attack: Run, **record: object) -> list[str]:
    return ["train", str(best_yaml(attack, {k: (v.format(root=attack.root) if isinstance(v, str) else v)
                                            for k, v in record.items()}))]


def _init_from_pickle(attack: Run) -> list[str]:
    folder = attack.root / "standalone"
    weights = crafted_pickle(folder / "weights.pt", attack.marker)
    run_config = {"model": {"class_path": "finesweep.models.image_classification.ImageClassifier",
                            "init_args": {"init_from": str(weights)}},
                  "data": {"class_path": "finesweep.models.image_classification.DigitsData", "init_args": {}}}
    return ["train", str(best_yaml(attack, {"spec_dir": str(folder), "checkpoint": None}, folder, run_config))]


def _tampered_trial_config(attack: Run) -> list[str]:
    import sqlite3

    with contextlib.closing(sqlite3.connect(attack.run / "study.db")) as db, db:
        db.execute("UPDATE trial_user_attributes SET value_json = '[1, 2]' WHERE key = 'config'")
    return ["export", str(attack.run)]


def _recorded_configs(attack: Run, run_config: dict) -> list[str]:
    """Every trial of the study recorded ``run_config`` (as a tampered study.db would), with
    real weights beside each: an ensemble of them builds what the configs name."""
    import sqlite3

    import torch

    for number in range(3):
        (attack.run / "trials" / f"trial_{number:04d}").mkdir(parents=True, exist_ok=True)
        torch.save({"w": torch.zeros(1)}, attack.run / "trials" / f"trial_{number:04d}" / "model.pt")
    with contextlib.closing(sqlite3.connect(attack.run / "study.db")) as db, db:
        db.execute("UPDATE trial_user_attributes SET value_json = ? WHERE key = 'config'", (json.dumps(run_config),))
    return ["ensemble", str(attack.run), "--top-k", "1"]


def popen(marker: Path) -> dict:
    return {"class_path": "subprocess.Popen", "init_args": {"args": ["sh", "-c", f"echo popen >> {marker}"]}}


def _planted_link(attack: Run, name: str, command: str, folder: bool = False) -> list[str]:
    """``run/name`` planted as a symbolic link to a file (or folder) of the user's elsewhere."""
    target = attack.root / ("precious" if folder else "precious.txt")
    if folder:
        target.mkdir()
        (target / "keep.txt").write_text("mine\n")
    else:
        target.write_text("mine\n")
    (attack.run / name).symlink_to(target)
    return [command, str(attack.run)]


def _escape_in_a_reason(attack: Run) -> list[str]:
    storage = optuna.storages.RDBStorage(f"sqlite:///{attack.run / 'study.db'}")
    study = optuna.load_study(study_name="attack", storage=storage)
    study.add_trial(optuna.trial.create_trial(
        state=optuna.trial.TrialState.FAIL, params={"lr": 0.01, "units": 2}, distributions=PARAMS,
        user_attrs={"fail_reason": "\x1b]0;pwned\x07\x1b[2Jcleared your screen", "epochs": 0}))
    storage.engine.dispose()
    return ["status", str(attack.run)]


def _robust(attack: Run, text: str) -> list[str]:
    best_yaml(attack)
    (attack.run / "robust.yaml").write_text(text)
    return ["export", str(attack.run)]


def _sweep(attack: Run, *extra: str, **spec: object) -> list[str]:
    return ["sweep", str(user_spec(attack, **spec)), "--out", str(attack.other / "out"), *extra]


def _sweep_resume_edited(attack: Run) -> list[str]:
    edit(attack.run / "spec.yaml", "class_path: evilmod.M", "class_path: evilmod.N")
    new = attack.other / "new.yaml"
    new.write_text((attack.run / "spec.yaml").read_text())
    return ["sweep", str(new), "--resume", "--out", str(attack.run)]


def _train_full_disk(attack: Run) -> list[str]:
    folder = attack.root / "standalone"
    best = best_yaml(attack, {"spec_dir": str(folder), "checkpoint": None, "metric": "val_acc"}, folder, debug_config())
    return full_disk(attack, "train", str(best), "--out", str(attack.root / "full" / "out"))


DEEP = "[" * 5000 + "]" * 5000
CASES = [
    # 3. A crafted ray_session.json: a view ends nothing; `clean` ends only Ray's own processes.
    Case("status_with_crafted_session_ends_nothing", lambda a: (crafted_session(a), ["status", str(a.run)])[1],
         0, "best so far"),
    Case("clean_with_crafted_session_ends_no_process_that_is_not_rays", _session, 0, "nothing ended",
         writes=("run/ray_session.json",)),
    Case("clean_session_record_nested_without_bound", lambda a: (
        (a.run / "ray_session.json").write_text(DEEP), ["clean", str(a.run)])[1], 2, "ray_session.json"),
    Case("clean_session_record_pid_out_of_range", lambda a: _session(a, processes={"99999999999": 1.0}),
         2, "processes.99999999999: expected an integer from 1 to"),
    Case("clean_session_record_too_many_processes",
         lambda a: _session(a, processes={str(pid): 1.0 for pid in range(1, 5000)}), 2, "at most 1024 entries"),
    Case("clean_session_record_session_dir_relative", lambda a: _session(a, session_dir="tmp/ray"),
         2, "session_dir: expected an absolute path"),
    Case("status_of_a_study_holding_terminal_control_sequences", _escape_in_a_reason, 0,
         "\\x1b[2Jcleared your screen", hidden=("\x1b",)),
    # 4. Resume checks the spec copy against the study's own record, before importing anything.
    Case("resume_of_a_copy_whose_name_was_edited", lambda a: _copy(a, "name: attack", "name: attack2", "resume"),
         2, "is not the name of the study it resumes"),
    Case("resume_of_a_copy_whose_model_was_edited",
         lambda a: _copy(a, "class_path: evilmod.M", "class_path: evilmod.N", "resume"), 2, "it was edited"),
    Case("resume_of_a_copy_whose_spec_dir_points_elsewhere",
         lambda a: (plant(a.root / "elsewhere", a.marker),
                    _copy(a, f"#% spec_dir: {a.spec}", "#% spec_dir: {root}/elsewhere", "resume"))[1],
         2, "it was edited"),
    Case("sweep_resume_onto_an_edited_copy", _sweep_resume_edited, 2, "it was edited"),
    # The spec copy read by the views: bounded, a view of a bad one is one line.
    Case("status_of_a_copy_with_trials_not_a_number", lambda a: _copy(a, "trials: 3", "trials: many"),
         2, "budget.trials: expected an integer"),
    Case("status_of_a_copy_larger_than_the_limit", lambda a: (
        (a.run / "spec.yaml").write_text((a.run / "spec.yaml").read_text() + "#" * (2 << 20)),
        ["status", str(a.run)])[1], 2, "at most 1048576 bytes"),
    Case("status_of_a_copy_with_a_relative_file_uri_storage",
         lambda a: _copy(a, "metric: val_acc", "storage: sqlite:///file:rel.db?uri=true\nmetric: val_acc"),
         2, "no study database at"),
    # 5. Storage URLs: views never create a database; passwords never printed.
    Case("dashboard_of_a_missing_sqlite_uri", lambda a: ["dashboard", "sqlite:///file:missing.db?uri=true"],
         2, "no study database at"),
    Case("status_of_a_url_with_a_password_in_its_query",
         lambda a: ["status", "postgresql://u:pw1@127.0.0.1:9/x?password=hunter2"], 2, "password=***",
         hidden=("hunter2", "pw1")),
    Case("sweep_with_a_storage_in_a_missing_folder_is_refused_before_ray",
         lambda a: _sweep(a, "--storage", "sqlite:////nonexistent-finesweep/study.db"), 2,
         "cannot open the study storage"),
    Case("sweep_with_an_unreachable_storage_and_a_password_in_its_query",
         lambda a: _sweep(a, "--storage", "postgresql://u@127.0.0.1:9/x?password=hunter2"), 2,
         "cannot open the study storage", hidden=("hunter2",)),
    # 6 and the minors: the records of exports, robust.yaml, ensemble.yaml, the study's trials.
    Case("train_with_threads_100000", lambda a: _train(a, threads=100000), 2, "threads: expected an integer from 1"),
    Case("train_with_threads_0", lambda a: _train(a, threads=0), 2, "threads: expected an integer from 1"),
    Case("train_with_a_metric_that_is_a_list", lambda a: _train(a, metric=[1, 2]), 2, "metric: expected a name"),
    Case("train_without_a_metric", lambda a: _train(a, metric=None), 2, "#% metric: expected finesweep's record"),
    Case("train_with_a_mode_that_is_neither", lambda a: _train(a, mode="sideways"), 2, "mode: expected one of min"),
    Case("train_with_a_value_that_is_nan", lambda a: _train(a, value=float("nan")), 2, "value: expected a number"),
    Case("train_with_a_spec_dir_pointing_elsewhere",
         lambda a: (plant(a.root / "elsewhere", a.marker), _train(a, spec_dir="{root}/elsewhere"))[1],
         2, "spec_dir: expected the spec folder of the run"),
    Case("train_with_a_relative_spec_dir", lambda a: _train(a, spec_dir="spec"), 2, "spec_dir: expected an absolute"),
    Case("train_with_a_checkpoint_outside_the_run", lambda a: _train(a, checkpoint="/etc/passwd"), 2,
         "checkpoint: expected a path inside"),
    Case("train_with_an_init_from_that_is_a_crafted_pickle", _init_from_pickle, 2, "init_from"),
    Case("export_with_a_robust_yaml_larger_than_the_limit",
         lambda a: _robust(a, "chosen_trial: 0\n" + "#" * (2 << 20)), 2, "robust.yaml: (top level): expected a spec"),
    Case("export_with_a_robust_yaml_whose_choice_is_not_a_trial",
         lambda a: _robust(a, "chosen_trial: {a: 1}\n"), 2, "chosen_trial: expected an integer"),
    Case("export_of_a_study_whose_trial_config_was_tampered", _tampered_trial_config, 2,
         "user_attrs.config: expected a mapping"),
    Case("ensemble_of_a_crafted_pickle",
         lambda a: ["ensemble", str(ensemble_yaml(a, crafted_pickle(a.run / "trials/trial_0000/model.pt", a.marker)))],
         2, "not a model.pt of finesweep's"),
    Case("ensemble_with_a_checkpoint_outside_the_run",
         lambda a: ["ensemble", str(ensemble_yaml(a, "/etc/hostname"))], 2, "checkpoint: expected a path inside"),
    Case("ensemble_of_recorded_configs_naming_a_class_that_is_not_a_datamodule",
         lambda a: _recorded_configs(a, {**debug_config(), "data": popen(a.marker)}), 2,
         "subprocess.Popen is not a LightningDataModule"),
    Case("train_with_a_trainer_callback_that_is_not_one",
         lambda a: ["train", str(best_yaml(a, {"spec_dir": str(a.root / "standalone"), "checkpoint": None},
                                           a.root / "standalone",
                                           {**debug_config(), "trainer": {"callbacks": [popen(a.marker)]}}))],
         2, "trainer.callbacks", lines=2),
    # Links planted where a command writes: the files they point to are never written.
    Case("export_through_a_planted_partial_file_link", lambda a: _planted_link(a, "best.yaml.partial", "export"),
         0, "best.yaml", writes=("run/best.yaml", "run/best.yaml.partial")),
    Case("report_into_a_planted_folder_link", lambda a: _planted_link(a, "report", "report", folder=True),
         2, "a symbolic link where a folder of the run belongs"),
    # 2. Commands that train put the user's folders after the installed packages.
    Case("sweep_of_a_module_named_like_an_installed_package",
         lambda a: _sweep(a, model="optuna.M", data="yaml.D"), 2, "has the name of an installed package", lines=3),
    Case("sweep_beside_planted_packages_imports_none_of_them", lambda a: _sweep(a, trials=0), 2,
         "budget.trials: expected an integer >= 1", cwd="spec", lines=2),
    Case("sweep_whose_datamodule_hangs_is_stopped", lambda a: _sweep(a, hang=True), 2,
         "did not finish within 4 s", env=(("FINESWEEP_INPUT_TIMEOUT_S", "4"),)),
    # A full disk: one line, nothing half-written.
    Case("report_on_a_full_disk", lambda a: full_disk(a, "report", str(a.run), "--out", str(a.root / "full" / "rep")),
         2, "no space left on the device", writes=("full.txt",), full_disk=True),
    Case("train_out_on_a_full_disk", _train_full_disk, 2, "no space left on the device", writes=("full.txt",),
         full_disk=True),
]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_attack_is_refused_in_one_line_and_runs_writes_and_ends_nothing(attack, case):
    if case.full_disk and not can_fill_a_disk():
        pytest.skip("needs unshare (a user and mount namespace) for a private full tmpfs")
    args = case.setup(attack)
    before = snapshot(attack.root)
    entry = [*FULL_ENTRY, str(attack.root / "full"), sys.executable, LAUNCH] if case.full_disk else None
    result = cli(args, getattr(attack, case.cwd), dict(case.env), entry=entry)
    output = result.stdout + result.stderr
    assert result.returncode == case.exit, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    # A slow import or a hanging DataModule gets a "still waiting" note first: a note, not an error.
    errors = [line for line in result.stderr.splitlines() if line.strip() and "still waiting for" not in line]
    if case.exit:
        assert len(errors) == case.lines, errors
        assert case.message in result.stderr, result.stderr
    else:
        assert errors == [], errors
        assert case.message in result.stdout, result.stdout
    for secret in case.hidden:
        assert secret not in output
    assert "starting Ray" not in output
    assert attack.ran() == [], f"imported or unpickled: {attack.ran()}"
    assert attack.victim.poll() is None, "the victim process was ended"
    after = snapshot(attack.root)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    allowed = {str(attack.root / path) for path in case.writes}
    assert [path for path in changed if path not in allowed] == []
    if case.full_disk:  # Nothing of the refused command is left on the full disk.
        assert (attack.root / "full.txt").read_text().split() == []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_briefly(args: list[str], cwd: Path, path: str, entry: list[str]) -> int:
    """Start a serving view, wait until it answers ``path``, then stop it (SIGTERM: a Ctrl-C that
    lands inside a request the server is still answering is a matter of the signal tests)."""
    port = _free_port()
    process = subprocess.Popen([*entry, *args, "--port", str(port)], cwd=cwd, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()[0][-3000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as answer:
                    assert answer.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline, "the view never answered"
                time.sleep(0.3)
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=60)[0]
        assert "Traceback" not in output, output[-3000:]
        return process.returncode
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# A view's own outputs, relative to the run directory; everything else stays as it was.
VIEWS = {"status": (), "export": ("best.yaml",), "report": ("report.html", "report/"),
         "dashboard": (), "tensorboard": ()}
SERVED = {"dashboard": "/", "tensorboard": "/data/runs"}


@pytest.mark.slow
@pytest.mark.parametrize("where", ["run", "spec", "other"])
@pytest.mark.parametrize("view", list(VIEWS))
def test_views_import_run_and_end_nothing_of_a_booby_trapped_run_directory(attack, view, where):
    # No `#% spec_dir:` line: the run directory is where a module named evilmod would come from.
    edit(attack.run / "spec.yaml", f"#% spec_dir: {attack.spec}\n", "")
    crafted_session(attack)
    entry = [sys.executable, LAUNCH] if where != "other" else [str(Path(sys.executable).parent / "finesweep")]
    before = snapshot(attack.root)
    if view in SERVED:
        serve_briefly([view, str(attack.run)], getattr(attack, where), SERVED[view], entry)
    else:
        result = cli([view, str(attack.run)], getattr(attack, where), entry=entry)
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stderr == "", result.stderr
    assert attack.ran() == [], f"imported: {attack.ran()}"
    assert attack.victim.poll() is None, "the victim process was ended"
    after = snapshot(attack.root)
    changed = sorted(path for path in before.keys() | after.keys() if before.get(path) != after.get(path))
    outputs = [f"{attack.run}/{name}" for name in VIEWS[view]]
    assert [path for path in changed if not any(path == o or path.startswith(o) and o.endswith("/")
                                                for o in outputs)] == []
    if view in ("export", "report"):
        assert changed, "the view wrote nothing"


# ---- the mechanisms, unit by unit (fast) ------------------------------------------------------


@pytest.mark.parametrize("url, path", [
    ("sqlite:///rel.db", "{cwd}/rel.db"),
    ("sqlite:///file:rel.db?uri=true", "{cwd}/rel.db"),
    ("sqlite:///file:/abs/x.db?mode=rwc&uri=true", "/abs/x.db"),
    ("sqlite:///file:///abs/a%20b.db?uri=true", "/abs/a b.db"),
    ("sqlite:////abs/x.db", "/abs/x.db"),
    ("sqlite+pysqlite:///sub/x.db?timeout=5", "{cwd}/sub/x.db"),
])
def test_every_sqlite_form_resolves_to_one_absolute_file(url, path, tmp_path, monkeypatch):
    from finesweep.search.study import normalize_storage, sqlite_file

    monkeypatch.chdir(tmp_path)
    expected = Path(path.format(cwd=tmp_path))
    assert sqlite_file(url) == expected
    normal = normalize_storage(url)
    assert sqlite_file(normal) == expected and "file:" not in normal and "uri=" not in normal
    monkeypatch.chdir("/")
    assert sqlite_file(normal) == expected  # the same file from any folder


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:", "sqlite:///file:x.db?mode=memory&uri=true",
                                 "postgresql://u@h/db"])
def test_in_memory_and_other_databases_have_no_file(url):
    from finesweep.search.study import normalize_storage, sqlite_file

    assert sqlite_file(url) is None and normalize_storage(url) == url


@pytest.mark.parametrize("url, shown, kept", [
    ("postgresql://me:s3cret@db/x", "postgresql://me:***@db/x", "postgresql://me@db/x"),
    ("postgresql://me@db/x?password=s3cret&sslmode=require", "postgresql://me@db/x?password=***&sslmode=require",
     "postgresql://me@db/x?sslmode=require"),
    ("mysql+pymysql://me:a@db/x?passwd=s3cret", "mysql+pymysql://me:***@db/x?passwd=***", "mysql+pymysql://me@db/x"),
    ("postgresql://me@db/x?PassWord=s3cret", "postgresql://me@db/x?PassWord=***", "postgresql://me@db/x"),
    ("sqlite:////runs/a/study.db", "sqlite:////runs/a/study.db", "sqlite:////runs/a/study.db"),
])
def test_passwords_are_redacted_in_messages_and_left_out_of_files_in_every_form(url, shown, kept):
    from finesweep.search.study import redact, without_password

    assert redact(url) == shown and without_password(url) == kept
    assert "s3cret" not in redact(url) + without_password(url)


def test_a_view_opens_sqlite_read_only_and_never_creates_the_file(tmp_path, monkeypatch):
    from finesweep.search.views.results import ResultsError, read_only_url

    monkeypatch.chdir(tmp_path)
    for url in ("sqlite:///gone.db", "sqlite:///file:gone.db?uri=true", f"sqlite:///file:{tmp_path}/gone.db?uri=true"):
        with pytest.raises(ResultsError, match="no study database"):
            read_only_url(url)
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "a b.db").write_bytes(b"")
    assert read_only_url("sqlite:///file:a%20b.db?uri=true") == f"sqlite:///file:{tmp_path}/a%20b.db?mode=ro&uri=true"


def test_a_study_file_is_created_owner_only_in_every_form(tmp_path, monkeypatch):
    import stat

    from finesweep.search.study import sqlite_file
    from finesweep.search.sweep import _private_file

    monkeypatch.chdir(tmp_path)
    _private_file(sqlite_file("sqlite:///file:rel.db?uri=true"))
    assert stat.S_IMODE((tmp_path / "rel.db").stat().st_mode) == 0o600


def test_trials_of_an_earlier_run_on_the_same_machine_are_not_another_node():
    from finesweep.search.cluster import machines, nodes_line

    def trial(node: str, ip: str = "10.0.0.1") -> optuna.trial.FrozenTrial:
        return optuna.trial.create_trial(value=1.0, user_attrs={"node": node, "node_ip": ip})

    # A resumed sweep: its first Ray ran two trials as node aaaa..., this one runs as node bbbb...
    trials = [trial("a" * 16), trial("a" * 16), trial("b" * 16)]
    assert machines(trials) == 1
    assert nodes_line(trials, {"b" * 16}) == "trials per node: 10.0.0.1 (earlier runs): 2, 10.0.0.1 (bbbbbbbb): 1"
    two = [*trials, trial("c" * 16, "10.0.0.2")]
    assert machines(two) == 2


def test_a_user_module_named_like_an_installed_package_is_named_as_the_clash(tmp_path):
    from finesweep.search.user_code import shadowing_problem

    for name in ("optuna", "yaml", "json", "mymodel"):
        (tmp_path / f"{name}.py").write_text("class M: pass\n")
    assert "an installed package" in shadowing_problem("optuna.M", [str(tmp_path)])
    assert "the standard library" in shadowing_problem("json.M", [str(tmp_path)])
    assert shadowing_problem("mymodel.M", [str(tmp_path)]) is None
    assert shadowing_problem("finesweep.models.debug.DebugClassifier", [str(tmp_path)]) is None


def test_user_folders_go_after_the_installed_packages(tmp_path, monkeypatch):
    from finesweep.search import user_code

    monkeypatch.setattr(sys, "path", ["", str(tmp_path), *sys.path])
    monkeypatch.chdir(tmp_path)
    user_code.demote_working_directory()
    user_code.add_user_folders([str(tmp_path)])
    site = next(i for i, p in enumerate(sys.path) if p.endswith("site-packages"))
    assert "" not in sys.path and sys.path.index(str(tmp_path)) > site


def test_the_users_code_is_bounded_in_time_and_a_broad_except_does_not_swallow_it(monkeypatch, capsys):
    from finesweep.search.user_code import TIMEOUT_VAR, UserCodeTimeout, time_limit

    monkeypatch.setenv(TIMEOUT_VAR, "0.5")
    started = time.monotonic()
    with pytest.raises(UserCodeTimeout, match=r"did not finish within 0.5 s"), time_limit("the DataModule"):
        while True:
            try:
                time.sleep(0.05)
            except Exception:  # noqa: BLE001 - as a user's code might
                pass
    assert time.monotonic() - started < 5
    assert "still waiting for the DataModule" in capsys.readouterr().err


def test_clean_ends_a_recorded_ray_process_and_nothing_that_only_claims_a_raylet(tmp_path):
    """Processes titled as Ray's (``ray::IDLE``), owned by this user: the recorded one, same pid
    and start time, is ended; one merely carrying a recorded pid as RAY_RAYLET_PID is not,
    nor one of another Ray session."""
    from finesweep.search.run_dir.leftovers import SessionRecord, clean_up

    def titled(title: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(["bash", "-c", f'exec -a "{title}" sleep 600'], env={**os.environ, **(env or {})})

    recorded, claiming, other = titled("ray::IDLE"), titled("ray::IDLE", {"RAY_RAYLET_PID": "1"}), \
        titled("ray::IDLE --session-dir=/tmp/ray/session_other")
    try:
        time.sleep(0.5)
        driver, started = dead_pid()
        record = SessionRecord(socket.gethostname(), driver, started, "/tmp/ray/session_mine",
                               {p.pid: psutil.Process(p.pid).create_time() for p in (recorded, other)} | {1: 1.0})
        (tmp_path / "ray_session.json").write_text(json.dumps({
            "host": record.host, "driver": record.driver, "driver_started": record.driver_started,
            "session_dir": record.session_dir, "processes": {str(k): v for k, v in record.processes.items()}}))
        ended = clean_up(tmp_path)
        assert [leftover.pid for leftover in ended] == [recorded.pid]
        assert recorded.wait(timeout=10) is not None
        assert claiming.poll() is None and other.poll() is None
        assert not (tmp_path / "ray_session.json").exists()
    finally:
        for process in (recorded, claiming, other):
            process.kill()
            process.wait()


# ---- real sweeps (Ray): what a failing trial prints, and where its study is stored ------------


@pytest.mark.slow
def test_a_metric_never_logged_prints_one_line_per_failed_trial_and_no_ray_traceback(attack):
    """A spec folder full of planted packages, a relative `file:` URI storage: the sweep stops
    after its first failed trial (the metric is never logged), a failed trial gets one progress line
    with its reason, Ray's own tracebacks stay behind --verbose, the study file is the one
    absolute file (owner-only) that a view reads from any folder without creating another."""
    import stat

    spec = user_spec(attack, metric="val_never", trials=2)
    # Without the dry run, which would name the metric before Ray (tests/test_dry_run.py).
    result = cli(["sweep", str(spec), "--out", str(attack.other / "out"), "--no-dry-run", "--storage",
                  "sqlite:///file:rel.db?uri=true"], attack.other, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    for noise in ("Traceback", "Unhandled error", "(raylet)", "ray::"):
        assert noise not in output, output[-3000:]
    # A metric never logged fails every trial the same way: the first failure stops the sweep
    # (the other trial is left to a resume).
    failed = [line for line in result.stdout.splitlines() if " FAIL " in line and line.startswith("[")]
    assert len(failed) == 1, result.stdout
    assert "val_never' was never logged" in failed[0]
    assert "the sweep stopped early, since every trial would fail the same way" in output
    assert attack.ran() == []
    database = attack.other / "rel.db"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    copy = yaml.safe_load((attack.other / "out" / "spec.yaml").read_text())
    assert copy["storage"] == f"sqlite:///{database}"
    status = cli(["status", str(attack.other / "out")], attack.spec)
    assert status.returncode == 0 and "FAIL 1" in status.stdout, status.stderr
    assert not (attack.spec / "rel.db").exists()


@pytest.mark.slow
def test_a_sweep_started_from_a_folder_of_planted_packages_runs_none_of_them_in_its_workers(attack):
    """Ray puts the driver's working directory first on each local worker's import path, and a
    trial's worker imports pandas (with Ray Tune) before the trial's context moves the user's
    folders behind the installed packages. From a folder holding `pandas.py` (and `optuna.py`,
    `yaml.py`), the driver starts Ray from an empty folder, so none of them runs anywhere."""
    (attack.spec / "pandas.py").write_text(f"open({str(attack.marker)!r}, 'a').write('pandas\\n')\n")
    spec = user_spec(attack, trials=1)
    result = cli(["sweep", str(spec), "--out", str(attack.other / "out")], attack.spec, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "COMPLETE 1" in result.stdout, result.stdout
    assert attack.ran() == []


@pytest.mark.slow
def test_a_hung_trial_is_one_line_with_its_reason(tmp_path):
    spec = tmp_path / "hang.yaml"
    spec.write_text("""\
name: hang
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.01, high: 0.1}
  fail_mode: hang
  fail_at_epoch: 1
strategy: {name: random, seed: 1}
scheduler: none
budget: {trials: 1, max_epochs: 2, trial_timeout_s: 3}
resources: {cpus: 1, concurrency: 1}
""")
    # The two sweeps share only the spec they read, so they run at once.
    with ThreadPoolExecutor(2) as pool:
        checking = pool.submit(cli, ["sweep", str(spec), "--out", str(tmp_path / "checked")], tmp_path, timeout=600)
        running = pool.submit(cli, ["sweep", str(spec), "--out", str(tmp_path / "out"), "--no-dry-run"], tmp_path,
                              timeout=600)
        checked, result = checking.result(), running.result()
    # The dry run hangs first, in the driver, and the trial's own limit bounds it: one line, exit 2,
    # no Ray, nothing left behind.
    assert checked.returncode == 2, (checked.stdout + checked.stderr)[-3000:]
    assert checked.stderr.strip().splitlines()[-1] == (
        "finesweep: the dry run did not finish within 3 s; nothing was started (budget.trial_timeout_s, or "
        "--no-dry-run)"), checked.stderr
    assert "starting Ray" not in checked.stdout and not (tmp_path / "checked").exists()
    # Without the dry run, the trial hangs in Ray and its watchdog ends it.
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]  # no trial completed
    for noise in ("Traceback", "(raylet)", "A worker died"):
        assert noise not in output, output[-3000:]
    failed = [line for line in result.stdout.splitlines() if " FAIL " in line and line.startswith("[")]
    assert len(failed) == 1 and "TrialHung: no epoch finished within 3 s" in failed[0], result.stdout


def test_threads_beyond_this_machines_cpus_are_capped_not_refused(tmp_path):
    """A best.yaml exported on a bigger machine trains here with this machine's CPUs; a count
    no machine has (the crafted 100000 of the attack table) is refused."""
    from finesweep.search.run_dir.files import MAX_THREADS, RunFileError, check_export_record, cpu_count

    source = tmp_path / "best.yaml"
    check_export_record(source, {"metric": "val_acc", "mode": "max", "threads": cpu_count() + 8})
    with pytest.raises(RunFileError, match="threads: expected an integer from 1"):
        check_export_record(source, {"metric": "val_acc", "mode": "max", "threads": MAX_THREADS + 1})


def test_a_recorded_trainer_callback_that_is_not_one_is_never_built(tmp_path):
    """`export --reseed` trains the configs the study recorded: a tampered one naming another
    kind of class as a Trainer callback (or as the model or data) is refused before it is built."""
    from finesweep.models.components import ComponentError
    from finesweep.models.run import TrainingRun
    from finesweep.models.training import build, make_trainer

    marker = tmp_path / "ran.txt"
    tampered = {**debug_config(), "trainer": {"callbacks": [popen(marker)]}}
    run = TrainingRun.from_config(tampered, max_epochs=1, seed=0, metric="val_acc", mode="max")
    with pytest.raises(ComponentError, match="subprocess.Popen is not a Lightning Callback"):
        make_trainer(run, [])
    with pytest.raises(ComponentError, match="subprocess.Popen is not a LightningModule"):
        build(run.with_changes(model=popen(marker)))
    time.sleep(0.5)
    assert not marker.exists()


def test_the_lock_is_never_taken_through_a_planted_link(tmp_path):
    from finesweep.search.run_dir.lock import LockError, RunLock

    precious = tmp_path / "precious.txt"
    precious.write_text("mine\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".finesweep.lock").symlink_to(precious)
    with pytest.raises(LockError, match="cannot take the lock"):
        RunLock(tmp_path / "run").acquire()
    assert precious.read_text() == "mine\n"
    RunLock(tmp_path / "run").check_free()  # a link is not followed; acquire() refuses it
    assert precious.read_text() == "mine\n"
    (tmp_path / "run" / ".finesweep.lock").unlink()
    os.mkfifo(tmp_path / "run" / ".finesweep.lock")
    RunLock(tmp_path / "run").check_free()  # a planted FIFO: returns at once, no writer awaited


def test_a_run_directory_held_by_a_live_sweep_is_found_without_taking_its_lock(tmp_path):
    from finesweep.search.run_dir.lock import LockError, RunLock

    run = tmp_path / "run"
    run.mkdir()
    RunLock(run).check_free()  # no lock file yet
    held = RunLock(run)
    held.acquire()
    with pytest.raises(LockError, match=rf"is in use by a running sweep \(pid {os.getpid()} on "):
        RunLock(run).check_free()
    held.release()
    RunLock(run).check_free()
    taken = RunLock(run)
    taken.acquire()  # check_free left nothing held
    taken.release()


def test_a_view_of_a_study_left_in_wal_mode_creates_no_files_beside_it(tmp_path):
    """A killed sweep's study.db (write-ahead log mode) copied without its -wal and -shm files:
    a read-only SQLite connection would create both, and leave them."""
    import sqlite3

    from finesweep.search.views.results import read_only_studies

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study.db'}")
    optuna.create_study(study_name="wal", storage=storage)
    storage.engine.dispose()
    with contextlib.closing(sqlite3.connect(tmp_path / "study.db")) as db:
        db.execute("PRAGMA journal_mode=WAL")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
    _, names = read_only_studies(f"sqlite:///{tmp_path / 'study.db'}")
    assert names == ["wal"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.db"]
