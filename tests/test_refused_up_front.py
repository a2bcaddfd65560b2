"""The four mistakes that once passed the check and then spent a sweep's whole budget on
identical failures (issue 22), made on the encoders example (examples/encoders): each is now
refused by ``launch.py sweep`` before Ray, with one located problem, exit 2 and nothing
created; and its ``trainer.callbacks`` list, which killed the driver when the study recorded
a trial's config, is accepted and recorded as plain data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from finesweep.search.spec import parse_spec

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "encoders"
SPEC = (EXAMPLE / "sweep.yaml").read_text()

# The example with its encoder fixed instead of searched, as `launch.py init` would start it.
MODEL_LINE = next(line for line in SPEC.splitlines() if line.startswith("  init_args: {num_classes: 10}"))
FIXED_ENCODER = SPEC.replace(
    MODEL_LINE, "  init_args:\n    num_classes: 10\n    encoder:\n"
    "      class_path: encoders_model.ConvEncoder\n      init_args: {depth: 2}").replace(
    "  model.encoder.class_path:\n    type: categorical\n    choices: [encoders_model.ConvEncoder, "
    "encoders_model.MLPEncoder]\n", "").split("  model.encoder.init_args.depth:")[0] + (
    "  model.lr: {type: float, low: 1.0e-3, high: 1.0e-1, log: true}\n"
    "budget: {trials: 12, max_epochs: 4}\n")


def edit(old: str, new: str, text: str) -> str:
    if text.count(old) != 1:
        raise ValueError(f"{old!r} occurs {text.count(old)} times, not once")
    return text.replace(old, new)


# id -> (spec text, the key path of its one problem, the line it is on, text the problem holds)
FAILURES = {
    "nested_typo": (edit("init_args.width:", "init_args.widht:", FIXED_ENCODER),
                    "space.model.encoder.init_args.widht", "model.encoder.init_args.widht:",
                    "did you mean `width`?"),
    "required_encoder_null": (edit("    encoder:\n      class_path: encoders_model.ConvEncoder\n      init_args: "
                                   "{depth: 2}", "    encoder: null   # REQUIRED (a Module ({class_path, init_args}))",
                                   FIXED_ENCODER).replace("  model.encoder.init_args.width: {type: int, low: 8, "
                                                          "high: 64, log: true}   # both encoders take a width\n", ""),
                              "model.init_args.encoder", "encoder: null", "required argument 'encoder'"),
    "missing_init_from": (edit("{num_classes: 10}", "{num_classes: 10, init_from: runs/old/model.pt}", SPEC),
                          "model.init_args.init_from", "init_args: {num_classes: 10, init_from",
                          "no such file"),
    "missing_data_file": (edit("classes_file: all_digits.txt", "classes_file: some_digits.txt", SPEC),
                          "data.init_args.classes_file", "classes_file:", "no such file"),
}

LOOP = """
import contextlib, io, json, sys, time
from finesweep.search.cli import main
results = []
for spec, out in zip(sys.argv[1::2], sys.argv[2::2]):
    err, started = io.StringIO(), time.perf_counter()
    with contextlib.redirect_stderr(err):
        code = main(["sweep", spec, "--out", out])
    results.append({"code": code, "stderr": err.getvalue(), "seconds": time.perf_counter() - started})
print(json.dumps({"results": results, "ray_imported": "ray" in sys.modules}))
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The example's module and data list in a folder of their own, specs beside them."""
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("encoders_model.py", "all_digits.txt"):
        shutil.copy(EXAMPLE / name, folder / name)
    return folder


def test_the_example_and_its_fixed_encoder_variant_pass_the_check(project):
    for name, text in (("sweep.yaml", SPEC), ("fixed.yaml", FIXED_ENCODER)):
        (project / name).write_text(text)
        parse_spec(project / name)


def test_the_four_failures_are_refused_before_ray_with_one_located_problem_and_nothing_created(project, tmp_path):
    pairs = []
    for name, (text, *_) in FAILURES.items():
        (project / f"{name}.yaml").write_text(text)
        pairs.append((project / f"{name}.yaml", tmp_path / f"run_{name}"))
    before = sorted(p.name for p in project.iterdir())
    done = subprocess.run([sys.executable, "-c", LOOP, *[str(p) for pair in pairs for p in pair]], cwd=tmp_path,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["ray_imported"]
    for (spec, out), (name, (text, key, line_start, says)), result in zip(pairs, FAILURES.items(),
                                                                          report["results"], strict=True):
        problems = [line for line in result["stderr"].splitlines() if line.startswith("  - ")]
        assert result["code"] == 2 and len(problems) == 1, (name, result)
        line = next(n for n, text_line in enumerate(text.splitlines(), 1) if text_line.strip().startswith(line_start))
        assert problems[0].startswith(f"  - {spec}:{line}: {key}: expected "), (name, problems[0])
        assert says in problems[0], (name, problems[0])
        assert not out.exists(), name
    assert sorted(p.name for p in project.iterdir()) == before  # nothing written beside the specs either
    print({name: round(r["seconds"], 2) for name, r in zip(FAILURES, report["results"], strict=True)})


def test_trainer_callbacks_are_recorded_in_the_study_as_plain_data(project, tmp_path):
    """Where the driver died: the study records each trial's config as JSON."""
    from finesweep.search.study import load_study, open_study, set_user_attrs

    (project / "sweep.yaml").write_text(SPEC)
    spec = parse_spec(project / "sweep.yaml")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    study = open_study(spec, url)
    trial = study.ask()
    config = spec.training_config(spec.space.sample(trial))
    set_user_attrs(trial, {"config": config})
    recorded = load_study(spec.name, url).trials[0].user_attrs["config"]
    assert recorded == json.loads(json.dumps(config)) == config
    assert [c["class_path"].rsplit(".", 1)[-1] for c in recorded["trainer"]["callbacks"]] == [
        "EarlyStopping", "LearningRateMonitor"]
    assert spec.trainer["callbacks"][0] == {"class_path": "pytorch_lightning.callbacks.EarlyStopping",
                                            "init_args": {"monitor": "val/loss", "mode": "min", "patience": 2}}
