"""Files a spec points at are read before any compute: a data file or ``init_from``
checkpoint that cannot be used is refused by `launch.py sweep` with exit 2, naming the file and
what is wrong, before Ray is imported and without creating the run directory.

Each case here is a failure that used to surface only inside every trial, often as an
exception naming neither the file nor the problem (``EOFError`` with no text,
``ZeroDivisionError``, ``_csv.Error``, rows silently dropped, ``KeyError: 'val_acc'``).
"""

from __future__ import annotations

import json
import pickle
import struct
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

def spec_text(task: str, data: str, space_line: str = "") -> str:
    return (f"name: own_inputs\ntask: {task}\ndata: {data}\nmetric: val_acc\nspace:\n{space_line}"
            "  learning_rate: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
            "budget: {trials: 2, max_epochs: 1}\n")


def text_spec(path: str) -> str:
    return spec_text("text_classification", f"{{source: files, path: {path}}}")


def speech_spec(path: str) -> str:
    return spec_text("speech_recognition", f"{{source: folder, path: {path}}}")


def digits_spec(weights: str) -> str:
    return spec_text("image_classification", "{classes: 5-9, train_per_class: 3}", f"  init_from: {weights}\n")


def _csv_rows(count: int) -> str:
    words = ["apples and pears grow here", "rain falls on the hills", "ships sail out at dawn",
             "the choir sang all evening", "bread rises in the oven", "owls hunt in the dark"]
    return "".join(f'"{words[i % len(words)]} number {i}",{"ab"[i % 2]}\n' for i in range(count))


def latin1_csv(folder: Path) -> tuple[str, str]:
    path = folder / "latin1.csv"
    path.write_bytes(("text,label\n" + _csv_rows(40)).encode() + "\"caf\xe9 cr\xe8me au lait\",a\n".encode("latin-1"))
    return text_spec(path.name), "latin1.csv:42: not UTF-8"


def unclosed_quote_csv(folder: Path) -> tuple[str, str]:
    path = folder / "quote.csv"
    path.write_text("text,label\n" + _csv_rows(10) + '"this quote never closes,a\n' + "x" * 140_000 + "\n")
    return text_spec(path.name), "quote that is never closed"


def two_row_csv(folder: Path) -> tuple[str, str]:
    path = folder / "tiny.csv"
    path.write_text("text,label\n" + _csv_rows(2))
    return text_spec(path.name), "split is empty"


def _wav(path: Path, rate: int = 11025, samples: int = 2000) -> None:
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(struct.pack(f"<{samples}h", *([1000, -1000] * (samples // 2))))


def _clips(folder: Path, broken: Callable[[Path], None]) -> str:
    clips = folder / "clips"
    clips.mkdir()
    rows = ["file,text,speaker"]
    for speaker in range(6):
        for word in ("yes", "no"):
            name = f"{word}_{speaker}.wav"
            _wav(clips / name)
            rows.append(f"{name},{word},s{speaker}")
    broken(clips / "no_5.wav")
    (clips / "transcripts.csv").write_text("\n".join(rows) + "\n")
    return speech_spec("clips")


def wav_sample_rate_zero(folder: Path) -> tuple[str, str]:
    def zero_rate(path: Path) -> None:
        data = bytearray(path.read_bytes())
        data[24:28] = struct.pack("<I", 0)  # the fmt chunk's sample rate
        path.write_bytes(bytes(data))
    return _clips(folder, zero_rate), "no_5.wav: impossible WAV header (1 channels, sample rate 0 Hz)"


def truncated_wav(folder: Path) -> tuple[str, str]:
    return _clips(folder, lambda path: path.write_bytes(path.read_bytes()[:30])), "no_5.wav: not a readable PCM WAV"


def missing_checkpoint(folder: Path) -> tuple[str, str]:
    return digits_spec("nowhere/model.pt"), "model.pt': no such file"


def empty_checkpoint(folder: Path) -> tuple[str, str]:
    (folder / "empty.pt").write_bytes(b"")
    return digits_spec("empty.pt"), "empty.pt': cannot be loaded as weights only"


class _RunsCode:
    def __reduce__(self):  # unpickling this would call print(): code from a file
        return (print, ("a checkpoint ran code",))


def code_in_checkpoint(folder: Path) -> tuple[str, str]:
    (folder / "evil.pt").write_bytes(pickle.dumps({"backbone.0.weight": _RunsCode()}))
    return digits_spec("evil.pt"), "evil.pt': cannot be loaded as weights only"


def checkpoint_of_another_shape(folder: Path) -> tuple[str, str]:
    import torch

    torch.save({"backbone.0.weight": torch.zeros(3, 3)}, folder / "other.pt")
    return digits_spec("other.pt"), "other.pt': 1 weights differ in shape"


CASES = [latin1_csv, unclosed_quote_csv, two_row_csv, wav_sample_rate_zero, truncated_wav,
         missing_checkpoint, empty_checkpoint, code_in_checkpoint, checkpoint_of_another_shape]

CLI_LOOP = """
import contextlib, io, json, sys
from finesweep.search.cli import main
results = []
for spec, out in zip(sys.argv[1::2], sys.argv[2::2]):
    err, said = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(said):
        code = main(["sweep", spec, "--out", out])
    results.append({"code": code, "stderr": err.getvalue(), "stdout": said.getvalue()})
print(json.dumps({"results": results, "ray_imported": "ray" in sys.modules}))
"""


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> dict[str, tuple[dict, str, Path]]:
    """Every case through the command line in one process (imports are paid once)."""
    runs, argv = {}, []
    for case in CASES:
        folder = tmp_path_factory.mktemp(case.__name__)
        text, says = case(folder)
        (folder / "spec.yaml").write_text(text)
        runs[case.__name__] = (says, folder)
        argv += [str(folder / "spec.yaml"), str(folder / "run")]
    done = subprocess.run([sys.executable, "-c", CLI_LOOP, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert not report["ray_imported"]
    return {name: (result, says, folder)
            for (name, (says, folder)), result in zip(runs.items(), report["results"], strict=True)}


@pytest.mark.parametrize("case", [case.__name__ for case in CASES])
def test_an_unusable_input_file_is_refused_up_front_naming_file_and_problem(case, refusals):
    result, says, folder = refusals[case]
    assert result["code"] == 2, result
    assert says in result["stderr"], result["stderr"]
    assert "Traceback" not in result["stderr"]
    assert "a checkpoint ran code" not in result["stdout"] + result["stderr"]
    assert not (folder / "run").exists()


def test_good_files_of_the_same_kinds_are_read_in_full(tmp_path):
    """The strict readers accept what they should: a UTF-8 CSV with a BOM and quoted
    commas and newlines, and a folder of valid clips."""
    from finesweep.models import speech_data, text_data

    path = tmp_path / "ok.csv"
    path.write_bytes("\ufefftext,label\n".encode() + b'"line one\nline two, with a comma",a\nplain,b\n')
    assert text_data.read_labelled_file(str(path)) == [("line one\nline two, with a comma", "a"), ("plain", "b")]
    _clips(tmp_path, lambda path: None)
    clips = speech_data.load_folder(str(tmp_path / "clips"))
    assert len(clips.audio) == 12 and set(clips.words) == {"yes", "no"}


def test_views_of_a_run_do_not_read_its_inputs_again(tmp_path):
    """status, report and export parse the run's spec copy with read_inputs=False: weights
    moved away after the sweep do not stop them, while a new sweep is refused."""
    from finesweep.search.spec import SpecError, parse_spec

    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(digits_spec("gone/model.pt"))
    assert parse_spec(spec_path, read_inputs=False).space.fixed["init_from"].endswith("gone/model.pt")
    with pytest.raises(SpecError, match="no such file"):
        parse_spec(spec_path)


@pytest.mark.slow
def test_a_relative_data_path_reaches_a_real_trial_from_another_directory(tmp_path, monkeypatch, local_ray):
    """`path: rows.csv` is the spec folder's file wherever the sweep is started: the spec makes it
    absolute, so a Ray trial worker (in a folder of Ray's) reads it without any Ray variable."""
    from finesweep.search.cli import main
    from finesweep.search.views.export import read_export

    folder = tmp_path / "spec"
    folder.mkdir()
    (folder / "rows.csv").write_text("text,label\n" + _csv_rows(40))
    (folder / "spec.yaml").write_text(text_spec("rows.csv").replace("trials: 2", "trials: 1"))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["sweep", str(folder / "spec.yaml"), "--out", str(tmp_path / "run")]) == 0
    exported = read_export(tmp_path / "run" / "best.yaml")
    assert exported.run.data["init_args"]["path"] == str(folder / "rows.csv")
    assert exported.value is not None  # the trial completed on the file's rows
