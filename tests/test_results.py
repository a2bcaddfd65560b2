"""Results of a real sweep: status (while it runs and after), the HTML report, TensorBoard
HParams (read back by TensorBoard's reader and served by a real TensorBoard), the robust
best over new seeds, the ensemble of the top trials and checkpoint retention.

One small sweep of the `debug` task is shared by the module. While it runs, a thread reads
its status from the study database and asks a real TensorBoard server (started by
`launch.py tensorboard` on 127.0.0.1) for its HParams table, so the live views are checked
against the running sweep, not a replay.
"""

from __future__ import annotations

import base64
import contextlib
import html.parser
import io
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest
import torch
import yaml
from finesweep.search.cli import main as cli_main
from finesweep.search.run_dir import ENSEMBLE_FILE, LIVE_RUN, checkpoint_path
from finesweep.search.run_dir.checkpoints import apply_retention
from finesweep.search.spec import parse_spec
from finesweep.search.study import state_counts
from finesweep.search.sweep import run_sweep
from finesweep.search.tensorboard_log import STATE_COLUMN
from finesweep.search.views.ensemble import reevaluate
from finesweep.search.views.export import read_export, read_record
from finesweep.search.views.results import ResultsError, candidates, load_sweep, mean_std
from finesweep.search.views.status import status_text
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import metadata as hparams_metadata

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Random search, seed 5: of 8 trials, trial 4 draws fail_mode raise with fail_at_epoch 1 and
# fails; trials 0, 2 and 7 draw raise too but fail_at_epoch past max_epochs, so they train on
# (fail_at_epoch is conditional: active for them, inactive for the other four). ASHA stops
# some after epoch 1 or 2, the rest complete. One failure only: a failed trial's worker
# is restarted, which costs seconds. epoch_seconds keeps each trial running for a second or
# two, long enough for the status and TensorBoard pollers to see it.
SPEC = """
name: results
task: debug
metric: val_acc
space:
  learning_rate: {type: float, low: 0.005, high: 0.5, log: true}
  hidden_units: {type: int, low: 2, high: 32, log: true}
  fail_mode: {type: categorical, choices: [none, raise]}
  fail_at_epoch: {type: int, low: 1, high: 8, when: {fail_mode: raise}}
  epoch_seconds: 0.3
strategy: {name: random, seed: 5}
scheduler: {name: asha, options: {grace_period: 1, reduction_factor: 2}}
budget: {trials: 8, max_epochs: 4}
resources: {cpus: 1, concurrency: 2}
"""

ALL_STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class TensorBoardServer:
    """`launch.py tensorboard` in its own process group, so stopping it stops TensorBoard too."""

    def __init__(self, run_dirs: list[Path], log: Path, *, sigint_ignored: bool = False) -> None:
        self.port = _free_port()
        self.log = log.open("w")
        # sigint_ignored: started as a script's shell starts a background job, SIGINT ignored.
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.process = subprocess.Popen(
            [sys.executable, str(ROOT / "launch.py"), "tensorboard", *map(str, run_dirs),
             "--port", str(self.port), "--reload-interval", "1"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT, preexec_fn=ignore)

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=json.dumps(body).encode(),
            headers={"X-XSRF-Protected": "1", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"TensorBoard exited with {self.process.returncode}")
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/data/runs", timeout=2).close()
                return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        raise TimeoutError("TensorBoard did not answer")

    def experiment(self) -> dict:
        return self.post("/data/plugin/hparams/experiment", {"experimentName": ""})

    def sessions(self) -> dict[str, dict]:
        """Session name -> {'hparams': ..., 'status': ..., 'metrics': ...} of every HParams row."""
        answer = self.post("/data/plugin/hparams/session_groups", {
            "experimentName": "", "allowedStatuses": ALL_STATUSES, "colParams": [],
            "startIndex": 0, "sliceSize": 1000})
        rows = {}
        for group in answer.get("sessionGroups", []):
            for session in group["sessions"]:
                rows[session["name"]] = {
                    "hparams": group["hparams"], "status": session.get("status", "STATUS_UNKNOWN"),
                    "metrics": {m["name"]["tag"]: m["value"] for m in session.get("metricValues", [])}}
        return rows

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


class Poller(threading.Thread):
    """Reads the running sweep's status and TensorBoard's HParams table every half second."""

    def __init__(self, run_dir: Path, server: TensorBoardServer) -> None:
        super().__init__(daemon=True)
        self.run_dir, self.server = run_dir, server
        self.stop_event = threading.Event()
        self.statuses: list[str] = []
        self.cli_status: str | None = None
        self.live_sessions: dict[str, dict] = {}
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stop_event.wait(0.5):
            try:
                if (self.run_dir / "spec.yaml").exists() and (self.run_dir / "study.db").exists():
                    text = status_text(load_sweep(self.run_dir))
                    self.statuses.append(text)
                    if self.cli_status is None and "\nrunning:\n  trial" in text and "epoch" in text:
                        # A second process reading the database the sweep is writing.
                        self.cli_status = subprocess.run(
                            [sys.executable, str(ROOT / "launch.py"), "status", str(self.run_dir)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT).stdout
                for name, row in self.server.sessions().items():
                    if row["hparams"].get(STATE_COLUMN) == "RUNNING":
                        self.live_sessions[name] = row
            except Exception as error:  # noqa: BLE001 - recorded, a test asserts on it
                self.errors.append(f"{type(error).__name__}: {error}")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory, local_ray):
    root = tmp_path_factory.mktemp("results")
    (root / "results.yaml").write_text(SPEC)
    spec = parse_spec(root / "results.yaml")
    run_dir, other = root / "sweep_a", root / "sweep_b"
    # `launch.py tensorboard` wants both folders; sweep_b gets a copy of sweep_a's files
    # later, standing in for a second sweep shown side by side.
    (run_dir / "tensorboard").mkdir(parents=True)
    (other / "tensorboard").mkdir(parents=True)
    server = TensorBoardServer([run_dir, other], root / "tensorboard.log")
    try:
        server.wait_ready()
        poller = Poller(run_dir, server)
        poller.start()
        started = time.monotonic()
        result = run_sweep(spec, run_dir)
        print(f"fixture sweep: {time.monotonic() - started:.1f} s")
        poller.stop_event.set()
        poller.join(timeout=30)
        yield {"spec": spec, "result": result, "run_dir": run_dir, "other": other, "server": server,
               "poller": poller, "root": root}
    finally:
        server.stop()


def _study(sweep) -> optuna.Study:
    return load_sweep(sweep["run_dir"]).study


@pytest.mark.slow
def test_fixture_sweep_has_complete_pruned_and_failed_trials(sweep):
    counts = state_counts(_study(sweep))
    assert counts.get("RUNNING", 0) == 0
    assert sum(counts.values()) == 8
    assert counts.get("COMPLETE", 0) >= 1 and counts.get("PRUNED", 0) >= 1 and counts.get("FAIL", 0) >= 1, counts


@pytest.mark.slow
def test_status_while_running(sweep):
    poller = sweep["poller"]
    assert not poller.errors, poller.errors[:3]
    running = [text for text in poller.statuses if "RUNNING" in text.splitlines()[1]]
    assert running, "the poller saw the sweep with trials RUNNING"
    assert any("\nrunning:\n  trial" in text and "epoch " in text for text in running)
    # Counts grew while the sweep ran: early snapshots had fewer finished trials than the end.
    assert poller.statuses[0] != poller.statuses[-1]
    assert poller.cli_status and "sweep 'results'" in poller.cli_status and "running:" in poller.cli_status


@pytest.mark.slow
def test_status_after_the_sweep(sweep, capsys):
    study = _study(sweep)
    counts = state_counts(study)
    assert cli_main(["status", str(sweep["run_dir"]), "--top-k", "2"]) == 0
    text = capsys.readouterr().out
    assert f"COMPLETE {counts['COMPLETE']}, PRUNED {counts['PRUNED']}, FAIL {counts['FAIL']}" in text
    best = max((t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.value)
    assert f"best so far: val_acc {best.value:.4f} (trial {best.number}" in text
    assert "running:" not in text
    assert "failures:" in text and "1 x finesweep.models.debug.InjectedFailure: injected failure in epoch 1" in text
    table = text[text.index("rank "):text.index("failures:")].strip().splitlines()
    assert len(table) == 1 + min(2, counts["COMPLETE"])

    # The same from the storage URL alone; the study is found without its name.
    assert cli_main(["status", sweep["result"].storage]) == 0
    assert f"COMPLETE {counts['COMPLETE']}, PRUNED {counts['PRUNED']}" in capsys.readouterr().out


def test_status_names_the_studies_when_the_storage_holds_several(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'two.db'}"
    for name in ("first", "second"):
        optuna.create_study(study_name=name, storage=url)
    with pytest.raises(ResultsError, match=r"holds 2 studies \(first, second\); choose one with --study"):
        load_sweep(url)
    assert cli_main(["status", url, "--study", "third"]) == 2
    assert "has no study 'third'; it has: first, second" in capsys.readouterr().err
    assert cli_main(["status", str(tmp_path)]) == 2


class _PageParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.images: list[str] = []
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.problems: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag in ("img", "meta", "br"):
            if tag == "img":
                self.images.append(dict(attrs)["src"])
            return
        self.stack.append(tag)
        if tag == "tr":
            self.rows.append([])
        if tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("td", "th"):
            self.rows[-1].append("".join(self.cell or []))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


@pytest.mark.slow
def test_report_is_offline_html_with_png_plots_and_every_trial(sweep, tmp_path):
    assert cli_main(["report", str(sweep["run_dir"]), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "http://" not in page and "https://" not in page and "<script" not in page, "offline: nothing fetched"
    parser = _PageParser()
    parser.feed(page)
    parser.close()
    assert not parser.problems and not parser.stack, (parser.problems, parser.stack)

    plots = sorted(p.name for p in (tmp_path / "report").glob("*.png"))
    assert plots == ["history.png", "importances.png", "learning_curves.png", "parallel_coordinates.png"]
    for path in (tmp_path / "report").glob("*.png"):
        assert path.read_bytes().startswith(PNG_MAGIC)
    assert len(parser.images) == 4
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(PNG_MAGIC)

    study = _study(sweep)
    header = next(row for row in parser.rows if row[:2] == ["trial", "state"])
    assert header == ["trial", "state", "val_acc", "epochs", "learning_rate", "hidden_units", "fail_mode",
                      "fail_at_epoch", "reason"]
    rows = {row[0]: row for row in parser.rows if len(row) == len(header) and row[1] in
            ("COMPLETE", "PRUNED", "FAIL")}
    assert sorted(map(int, rows)) == [t.number for t in study.trials], "every trial is on the page"
    for trial in study.trials:
        row = rows[str(trial.number)]
        assert row[1] == trial.state.name
        assert row[header.index("fail_at_epoch")] == ("-" if trial.params["fail_mode"] == "none"
                                                      else str(trial.params["fail_at_epoch"]))
        if trial.state.name == "FAIL":
            assert "InjectedFailure" in row[-1]


@pytest.mark.slow
def test_report_warns_on_few_trials_shows_train_loss_and_a_colour_bar(sweep, tmp_path):
    from finesweep.search.views.importance import importances
    from finesweep.search.views.report import plot_curves, plot_importances, plot_parallel

    run_dir = sweep["run_dir"]
    assert cli_main(["report", str(run_dir), "--out", str(tmp_path)]) == 0
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    record = load_sweep(run_dir)
    trials = record.study.get_trials()

    # 7 trials with a value rank 4 parameters: the page and the plot both say it is too few.
    scored = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED") and t.intermediate_values]
    warning = f"Few trials: 4 parameters ranked from {len(scored)} trials, at least 50 wanted"
    assert f'<p class="warning">{warning}' in page
    result = importances(record, trials)
    assert result.values and result.warning.startswith(warning)
    assert warning in plot_importances(result, "val_acc").axes[0].get_title(loc="left").replace("\n", " ")

    # The parallel-coordinates colours come with a colour bar over the COMPLETE trials' values.
    bars = [axes for axes in plot_parallel(record, trials).axes if axes.get_label() == "<colorbar>"]
    assert [bar.get_ylabel() for bar in bars] == ["val_acc of COMPLETE trials"]
    complete = [t.value for t in trials if t.state.name == "COMPLETE"]
    low, high = min(complete), max(complete)
    assert bars[0].get_ylim() == pytest.approx((low, high if high > low else low + 1.0))

    # Learning curves: a second panel with each trial's train_loss as its worker logged it.
    metric_axes, loss_axes = plot_curves(record, trials, 5).axes
    assert metric_axes.get_ylabel() == "val_acc" and loss_axes.get_ylabel().startswith("train_loss")
    drawn = [list(line.get_ydata()) for line in loss_axes.get_lines()]
    for trial in record.ranked():
        logged = _read_run(run_dir / "tensorboard" / f"trial_{trial.number:04d}").Scalars("train_loss")
        assert [event.step for event in logged] == [1, 2, 3, 4]
        assert [event.value for event in logged] in drawn
    assert "val_acc (left) and train_loss (right" in page


def test_importance_warning_wants_50_trials_and_10_per_parameter():
    from finesweep.search.views.importance import importance_warning

    assert importance_warning(49, 4) is not None and importance_warning(50, 4) is None
    assert importance_warning(69, 7) is not None and importance_warning(70, 7) is None
    assert "3 parameters ranked from 12 trials, at least 50 wanted" in importance_warning(12, 3)


def _read_run(path: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(str(path), size_guidance={"tensors": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


@pytest.mark.slow
def test_hparams_read_back_include_pruned_failed_and_inactive(sweep):
    spec, run_dir = sweep["spec"], sweep["run_dir"]
    study = _study(sweep)
    board = run_dir / "tensorboard"
    assert not list(board.glob(f"trial_*/{LIVE_RUN}")), "start records are removed when trials end"
    seen_states = set()
    for trial in study.trials:
        run = _read_run(board / f"trial_{trial.number:04d}")
        content = run.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
        assert set(start.hparams) == {*spec.space.names, STATE_COLUMN}
        assert start.hparams[STATE_COLUMN].string_value == trial.state.name
        seen_states.add(trial.state.name)
        if trial.params["fail_mode"] == "none":
            assert start.hparams["fail_at_epoch"].string_value == "inactive"
        else:
            assert start.hparams["fail_at_epoch"].number_value == trial.params["fail_at_epoch"]
    assert seen_states == {"COMPLETE", "PRUNED", "FAIL"}


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)


@pytest.mark.slow
def test_tensorboard_server_shows_trials_live_then_final_side_by_side(sweep):
    server, poller = sweep["server"], sweep["poller"]
    spec, study = sweep["spec"], _study(sweep)
    # While the sweep ran, the server listed started trials as RUNNING, each with every column.
    assert poller.live_sessions, "no RUNNING trial was served while the sweep ran"
    for name, row in poller.live_sessions.items():
        assert name.startswith("sweep_a/trial_") and name.endswith(f"/{LIVE_RUN}")
        assert set(row["hparams"]) == {*spec.space.names, STATE_COLUMN}

    # A second sweep's files beside the first: both are served, told apart by folder name.
    shutil.copytree(sweep["run_dir"] / "tensorboard", sweep["other"] / "tensorboard", dirs_exist_ok=True)
    expected = {f"{side}/trial_{t.number:04d}" for side in ("sweep_a", "sweep_b") for t in study.trials}

    def served_both():
        rows = server.sessions()
        return rows if set(rows) == expected else None

    sessions = _wait_for(served_both)
    assert sessions, f"served sessions {sorted(server.sessions())} != {sorted(expected)}"

    experiment = server.experiment()
    columns = {info["name"] for info in experiment["hparamInfos"]}
    assert columns == {*spec.space.names, STATE_COLUMN}
    assert {m["name"]["tag"] for m in experiment["metricInfos"]} == {"final/val_acc"}
    for trial in study.trials:
        for side in ("sweep_a", "sweep_b"):
            row = sessions[f"{side}/trial_{trial.number:04d}"]
            assert set(row["hparams"]) == columns
            assert row["hparams"][STATE_COLUMN] == trial.state.name
            assert row["status"] == ("STATUS_FAILURE" if trial.state.name == "FAIL" else "STATUS_SUCCESS")
            if trial.params["fail_mode"] == "none":
                assert row["hparams"]["fail_at_epoch"] == "inactive"
            if trial.state.name == "COMPLETE":
                assert row["metrics"]["final/val_acc"] == pytest.approx(trial.value, abs=1e-6)


@pytest.mark.slow
def test_export_reseed_retrains_top_configs_and_exports_the_best_mean(sweep, capsys):
    run_dir = sweep["run_dir"]
    pool = candidates(load_sweep(run_dir))
    assert cli_main(["export", str(run_dir), "--top-k", "2", "--reseed", "2"]) == 0
    out = capsys.readouterr().out
    robust = yaml.safe_load((run_dir / "robust.yaml").read_text())
    configs = robust["configs"]
    assert [c["trial"] for c in configs] == [t.number for t in pool[:2]]
    means = []
    for config in configs:
        assert len(config["seeds"]) == 2 and len(config["runs"]) == 2 and not config["errors"]
        trial_seed = next(t for t in pool if t.number == config["trial"]).user_attrs["seed"]
        assert trial_seed not in config["seeds"], "new seeds, not the trial's own"
        for name in ("val_acc", "test_acc", "test_loss"):
            values = [run[name] for run in config["runs"]]
            mean, std = mean_std(values)
            assert config[name]["values"] == values
            assert config[name]["mean"] == pytest.approx(mean) and config[name]["std"] == pytest.approx(std)
            assert f"{mean:.4f} +- {std:.4f}" in out
        assert all(0.0 <= run["test_acc"] <= 1.0 for run in config["runs"])
        means.append(config["val_acc"]["mean"])
    chosen = configs[max(range(len(means)), key=lambda i: (means[i], -i))]
    assert robust["chosen_trial"] == chosen["trial"]

    best = read_export(run_dir / "best.yaml")
    assert read_record(run_dir / "best.yaml")["trial"] == chosen["trial"]
    assert _config(best) == next(t for t in pool if t.number == chosen["trial"]).user_attrs["config"]
    header = (run_dir / "best.yaml").read_text().splitlines()[1]
    assert f"val_acc {chosen['val_acc']['mean']:.4f} +- {chosen['val_acc']['std']:.4f}" in header
    table = (run_dir / "robust.md").read_text()
    assert table.count("\n| ") == 3 and "**yes**" in table

    # --top-k writes top/rank_NN.yaml with --reseed too: the retrained configs in sweep order,
    # each with its numbers over the new seeds.
    ranks = sorted((run_dir / "top").glob("rank_*.yaml"))
    assert [p.name for p in ranks] == ["rank_01.yaml", "rank_02.yaml"]
    for path, config in zip(ranks, configs, strict=True):
        assert str(path) in out
        exported = read_record(path)
        assert (exported["trial"], exported["rank"]) == (config["trial"], config["rank"])
        assert _config(read_export(path)) == next(t for t in pool if t.number == config["trial"]).user_attrs["config"]
        header = path.read_text().splitlines()[0]
        assert f"val_acc {config['val_acc']['mean']:.4f} +- {config['val_acc']['std']:.4f}" in header
        assert ("the robust best, also best.yaml" in header) == (config["trial"] == chosen["trial"])


@pytest.mark.slow
def test_plain_export_after_reseed_keeps_the_robust_best(sweep, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(sweep["run_dir"], copy, ignore=shutil.ignore_patterns(
        "ray", "tensorboard", "top", "best*.yaml", "robust.*", "ensemble.yaml"))
    assert cli_main(["export", str(copy), "--top-k", "2", "--reseed", "1"]) == 0
    robust_best = (copy / "best.yaml").read_text()
    chosen = yaml.safe_load((copy / "robust.yaml").read_text())["chosen_trial"]
    single = load_sweep(copy).ranked()[0].number
    capsys.readouterr()

    assert cli_main(["export", str(copy)]) == 0
    out, err = capsys.readouterr()
    assert (copy / "best.yaml").read_text() == robust_best, "the robust choice stays best.yaml"
    assert out.split() == [str(copy / "best_single.yaml")]
    assert read_record(copy / "best_single.yaml")["trial"] == single
    assert _config(read_export(copy / "best_single.yaml")) == load_sweep(copy).ranked()[0].user_attrs["config"]
    assert (f"kept best.yaml: it holds the robust best of `export --reseed` (trial {chosen}" in err
            and f"the single best trial (trial {single}) went to best_single.yaml" in err)

    # Without robust.yaml, best.yaml is the single best trial's again.
    (copy / "robust.yaml").unlink()
    assert cli_main(["export", str(copy)]) == 0
    assert capsys.readouterr().out.split() == [str(copy / "best.yaml")]
    assert read_record(copy / "best.yaml")["trial"] == single


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing_half_written(sweep, tmp_path):
    """The run's spec and study on a small tmpfs with ~1 KiB free (mounting needs root, as in
    CI's container): `export --top-k 3` fails with one line, exit 2, and leaves no partial
    best.yaml, no top/ folder and the study as it was. study.db alone is the whole study
    whatever ran before (the sweep folded its write-ahead log back, a reader connected or not)."""
    alone = tmp_path / "alone"
    alone.mkdir()
    with contextlib.closing(sqlite3.connect(shutil.copy(sweep["run_dir"] / "study.db", alone))) as connection:
        assert connection.execute("SELECT count(*) FROM trials").fetchone()[0] == 8
    needed = sum((sweep["run_dir"] / name).stat().st_size for name in ("spec.yaml", "study.db"))
    disk = tmp_path / "disk"
    disk.mkdir()
    size_kib = needed // 1024 + 24
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(disk)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    try:
        run = disk / "run"
        run.mkdir()
        for name in ("spec.yaml", "study.db"):
            shutil.copy2(sweep["run_dir"] / name, run / name)
        free = shutil.disk_usage(disk).free
        (disk / "filler").write_bytes(bytes(max(0, free - 1024)))
        before = {p.name: p.read_bytes() for p in run.iterdir()}
        done = subprocess.run([sys.executable, "launch.py", "export", str(run), "--top-k", "3"], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and "no space left on the device" in lines[0], done.stderr[-2000:]
        assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    finally:
        subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.slow
def test_sweep_leaves_no_empty_ray_trial_folders(sweep):
    folders = sorted((sweep["run_dir"] / "ray" / "tune").glob("ray_*"))
    failed = [t for t in _study(sweep).trials if t.state.name == "FAIL"]
    # Only the failed trial's folder is left, with Ray's account of the failure in it.
    assert {f.name for f in folders} == {f"ray_{t.user_attrs['ray_trial_id']}" for t in failed}
    assert all((f / "error.txt").is_file() for f in folders)


@pytest.mark.slow
def test_ensemble_of_top_checkpoints_and_reload(sweep, capsys):
    from finesweep.models.inference import as_averageable, load_model, predictions, scores
    from finesweep.models.run import TrainingRun

    run_dir, spec = sweep["run_dir"], sweep["spec"]
    pool = candidates(load_sweep(run_dir))
    assert cli_main(["ensemble", str(run_dir), "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    saved = yaml.safe_load((run_dir / ENSEMBLE_FILE).read_text())
    members = saved["members"]
    assert [m["trial"] for m in members] == [t.number for t in pool[:3]]
    assert all(Path(m["checkpoint"]).exists() for m in members)

    def member(m):
        run = TrainingRun.from_config(m["config"], max_epochs=1, seed=0, metric=spec.metric, mode=spec.mode)
        return load_model(run, m["checkpoint"])

    # The best single model's test accuracy, computed independently through Lightning's test loop.
    import pytorch_lightning as pl

    best, data = member(members[0])
    tested = pl.Trainer(logger=False, enable_progress_bar=False).test(best, datamodule=data, verbose=False)[0]
    assert saved["scores"]["test"]["best_single"]["acc"] == pytest.approx(tested["test_acc"], abs=1e-6)
    # The ensemble: the mean of the members' probabilities.
    outputs = []
    for m in members:
        model, data = member(m)
        raw, targets = predictions(model, data.test_dataloader())
        outputs.append(as_averageable(raw, "classification"))
    probabilities = torch.stack(outputs).mean(0)
    assert saved["scores"]["test"]["ensemble"] == pytest.approx(scores(probabilities, targets, "classification"))
    assert f"{saved['scores']['test']['ensemble']['acc']:.4f}" in out and "held-out" in out

    again = reevaluate(run_dir / ENSEMBLE_FILE)
    assert again.splits["test"]["ensemble"] == pytest.approx(saved["scores"]["test"]["ensemble"])
    assert cli_main(["ensemble", str(run_dir / ENSEMBLE_FILE)]) == 0


@pytest.mark.slow
def test_checkpoint_retention_keeps_the_best_k(sweep, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(sweep["run_dir"], copy, ignore=shutil.ignore_patterns("ray", "tensorboard"))
    record = load_sweep(copy)
    pool = candidates(record)
    removed = apply_retention(copy, record.study, record.mode, keep_best=2)
    kept = {t.number for t in record.study.trials if checkpoint_path(copy, t.number).exists()}
    assert kept == {t.number for t in pool[:2]}
    assert removed and all(not p.exists() for p in removed)
    with pytest.raises(ResultsError, match="no checkpoint for 1 of the top 3"):
        from finesweep.search.views.ensemble import build_ensemble

        build_ensemble(record, 3)
    with pytest.raises(ValueError, match="keep_best must be at least 1"):
        apply_retention(copy, record.study, record.mode, keep_best=0)


def test_monitor_closes_trials_the_sweep_ended_around(tmp_path):
    """A trial still RUNNING when the sweep stops gets its final HParams record from the study."""
    from finesweep.search.study import Outcome, fail_unfinished, open_study, tell
    from finesweep.search.tensorboard_log import HParamsLog
    from finesweep.search.views.progress import SweepMonitor

    (tmp_path / "results.yaml").write_text(SPEC)
    spec = parse_spec(tmp_path / "results.yaml")
    study = open_study(spec, f"sqlite:///{tmp_path / 'study.db'}")
    log = HParamsLog(tmp_path / "tensorboard", spec.space, spec.metric)
    monitor = SweepMonitor(spec, 2, log, out=io.StringIO())
    trials = [study.ask() for _ in range(2)]
    params = [spec.space.sample(trial) for trial in trials]
    for trial, sampled in zip(trials, params, strict=True):
        monitor.trial_started(trial.number, sampled)
    assert (tmp_path / "tensorboard" / "trial_0001" / LIVE_RUN).is_dir()
    tell(study, trials[0], Outcome("COMPLETE", 0.75))
    monitor.trial_ended(0, params[0], Outcome("COMPLETE", 0.75), 4)
    assert fail_unfinished(study, "the sweep ended while the trial was running") == 1
    monitor.close_unfinished(study)
    assert not list((tmp_path / "tensorboard").glob(f"trial_*/{LIVE_RUN}"))
    for number, state in ((0, "COMPLETE"), (1, "FAIL")):
        run = _read_run(tmp_path / "tensorboard" / f"trial_{number:04d}")
        content = run.PluginTagToContent(hparams_metadata.PLUGIN_NAME)
        start = hparams_metadata.parse_session_start_info_plugin_data(content[hparams_metadata.SESSION_START_INFO_TAG])
        assert start.hparams[STATE_COLUMN].string_value == state
        assert set(start.hparams) == {*spec.space.names, STATE_COLUMN}


def test_tensorboard_tells_apart_sweeps_of_the_same_name():
    from finesweep.search.views.board import board_labels

    labels = board_labels([Path("/x/runs/a/cnn"), Path("/x/runs/b/cnn"), Path("/x/runs/text"),
                           Path("/x/runs/text")])
    assert labels == {Path("/x/runs/a/cnn"): "a/cnn", Path("/x/runs/b/cnn"): "b/cnn",
                      Path("/x/runs/text"): "text"}


def test_status_reads_a_database_a_killed_sweep_left_mid_write(tmp_path):
    """A driver killed inside a transaction leaves a hot journal behind; `status` must still
    read the committed trials (a read-only connection alone cannot)."""
    db = tmp_path / "study.db"
    storage = f"sqlite:///{db}"
    study = optuna.create_study(study_name="killed", storage=storage)
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 0.5)
    writer = (
        "import os, sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "c.execute('PRAGMA cache_size=1')\n"  # spill pages to the file, as a long transaction does
        "c.execute('BEGIN IMMEDIATE')\n"
        "for i in range(2000):\n"
        "    c.execute(\"INSERT INTO trial_user_attributes (trial_id, key, value_json) \"\n"
        "              \"VALUES (1, ?, '1')\", (f'k{i}',))\n"
        "os._exit(0)\n")  # killed before COMMIT
    subprocess.run([sys.executable, "-c", writer, str(db)], check=True)
    assert (tmp_path / "study.db-journal").exists()
    record = load_sweep(storage)
    assert [t.value for t in record.study.trials] == [0.5]
    assert "k0" not in record.study.trials[0].user_attrs, "the uncommitted write is rolled back"


@pytest.mark.slow
@pytest.mark.parametrize(("stop", "sigint_ignored"), [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                      (signal.SIGINT, True)],
                         ids=["SIGTERM", "SIGINT", "SIGINT-ignored-by-the-parent"])
def test_stopping_the_tensorboard_command_leaves_nothing_serving(tmp_path, stop, sigint_ignored):
    """A process manager signals the command's own PID only (not its process group): nothing
    it started may go on listening on the port. Ctrl-C stops it even when it inherited SIGINT
    ignored (a background job of a script; the plain SIGINT case hung in full runs of the suite)."""
    import psutil

    (tmp_path / "run" / "tensorboard").mkdir(parents=True)
    server = TensorBoardServer([tmp_path / "run"], tmp_path / "tensorboard.log", sigint_ignored=sigint_ignored)
    try:
        server.wait_ready()
        command = psutil.Process(server.process.pid)
        started = [command, *command.children(recursive=True)]
        server.process.send_signal(stop)
        server.process.wait(timeout=60)
        _, alive = psutil.wait_procs(started, timeout=30)
        assert not alive, f"still running after {stop.name}: {[p.cmdline() for p in alive]}"
        listening = [c for c in psutil.net_connections("tcp")
                     if c.status == psutil.CONN_LISTEN and c.laddr.port == server.port]
        assert not listening, f"port {server.port} still served after {stop.name}: {listening}"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=5).close()
    finally:
        # Its own session: whatever a failing run left behind is stopped here, not by the next test.
        try:
            os.killpg(server.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        server.stop()


def _config(exported) -> dict:
    """An export's run as the trial's recorded config (model, data, trainer sections)."""
    return {"model": dict(exported.run.model), "data": dict(exported.run.data), "trainer": dict(exported.run.trainer)}
