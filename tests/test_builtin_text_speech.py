"""The built-in text and speech tasks as plain Lightning classes: each trains through
``training.fit`` from ``{class_path, init_args}``, logs its metrics, says what its data held,
rejects a bad setting in the DataModule's ``__init__`` naming the argument, and fine-tunes from
a saved state dict.

These need Debian's fortunes and the espeak-ng digits (scripts/setup.sh installs and builds
both); where they are missing the tests fail with the install hint rather than skip.
"""

from __future__ import annotations

import csv
import math
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from finesweep.models import speech_data, text_data
from finesweep.models.components import instantiate
from finesweep.models.data_sources import MissingDataSource
from finesweep.models.speech_recognition import SpeechClassifier, SpeechData
from finesweep.models.text_classification import TextClassifier, TextData
from finesweep.models.training import FitResult, TrainingRun, fit

TEXT_MODEL = "finesweep.models.text_classification.TextClassifier"
TEXT_DATA = "finesweep.models.text_classification.TextData"
SPEECH_MODEL = "finesweep.models.speech_recognition.SpeechClassifier"
SPEECH_DATA = "finesweep.models.speech_recognition.SpeechData"

TINY_TEXT = {"hidden_size": 8, "embedding_dim": 8}
TINY_TEXT_DATA = {"categories": "computers,zippy", "max_per_class": 12, "max_tokens": 16, "min_freq": 1,
                  "batch_size": 16}
TINY_SPEECH = {"hidden_size": 8, "layers": 1, "n_mels": 16}
TINY_SPEECH_DATA = {"max_per_class": 5, "clip_seconds": 0.5, "batch_size": 16}
TRAINED = {"train_loss", "val_loss", "val_acc"}


def train(model: str, model_args: dict, data: str, data_args: dict, epochs: int = 1, **kwargs) -> FitResult:
    run = TrainingRun(model={"class_path": model, "init_args": model_args},
                      data={"class_path": data, "init_args": data_args},
                      trainer={}, max_epochs=epochs, seed=0, metric="val_acc", mode="max")
    return fit(run, threads=1, **kwargs)


def write_wav(path: Path, tone_hz: float, rate: int = 16000, seconds: float = 0.3) -> None:
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.5 * np.sin(2 * math.pi * tone_hz * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


def write_speech_folder(folder: Path) -> None:
    """Eight clips of two 'words' (a low and a high tone) by four speakers, with transcripts.csv."""
    rows = ["file,text,speaker"]
    for speaker in range(4):
        for word, tone in (("low", 300.0), ("high", 2000.0)):
            write_wav(folder / f"{word}_{speaker}.wav", tone + 10 * speaker)
            rows.append(f"{word}_{speaker}.wav,{word},s{speaker}")
    (folder / "transcripts.csv").write_text("\n".join(rows))


@pytest.fixture(scope="module")
def text_source(tmp_path_factory) -> tuple[FitResult, Path]:
    """One tiny run on the fortunes, its best weights saved (torch.save of a state dict)."""
    path = tmp_path_factory.mktemp("text") / "model.pt"
    return train(TEXT_MODEL, TINY_TEXT, TEXT_DATA, TINY_TEXT_DATA, checkpoint_path=path, evaluate_test=True), path


@pytest.fixture(scope="module")
def speech_source(tmp_path_factory) -> tuple[FitResult, Path]:
    """One tiny augmented run on two spoken digits, its best weights saved."""
    path = tmp_path_factory.mktemp("speech") / "model.pt"
    model = {**TINY_SPEECH, "features": "mfcc", "pooling": "last", "aug_noise": 0.1, "aug_shift": 0.05,
             "aug_freq_mask": 4, "aug_time_mask": 5}
    data = {**TINY_SPEECH_DATA, "words": "zero,one"}
    return train(SPEECH_MODEL, model, SPEECH_DATA, data, checkpoint_path=path, evaluate_test=True), path


# ---- training through fit


def test_text_on_fortunes_trains_and_logs_its_metrics(text_source):
    result, _ = text_source
    assert set(result.best) >= TRAINED and set(result.test) == {"test_loss", "test_acc"}
    assert 0.0 <= result.best["val_acc"] <= 1.0 and math.isfinite(result.test["test_loss"])
    assert result.data_summary.startswith("Debian fortunes (computers,zippy): ")
    assert "labels: computers, zippy" in result.data_summary and "train 16, val 4, test 4" in result.data_summary


def test_text_on_a_user_csv_says_what_was_read_dropped_and_split(tmp_path):
    rows = [(f"I really liked item number {i}, it was great", "pos") for i in range(12)]
    rows += [(f"I did not like thing {i} at all, sadly", "neg") for i in range(12)]
    rows += [("I REALLY liked item number 0 -- it was great!", "pos"),  # a normalised duplicate
             ("I did not like thing 3 at all, sadly", "neg"),  # an exact duplicate
             ("", "pos"), ("short", "neg"), ("#### |||| ==== ####", "pos"),  # empty, too short, garbled
             ("A fine sentence without any label", "")]
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([("text", "label"), *rows])
    data = {"source": "files", "path": str(path), "val_fraction": 0.25, "test_fraction": 0.25, "min_freq": 1}
    result = train(TEXT_MODEL, {**TINY_TEXT, "cell": "lstm", "layers": 2, "pooling": "mean"}, TEXT_DATA, data,
                   evaluate_test=True)
    assert set(result.best) >= TRAINED and "test_acc" in result.test
    summary = result.data_summary
    assert summary.startswith(f"file {path}: 30 rows read, 4 dropped by cleaning "
                              "(empty 1, garbled 1, no label 1, too short 1), 2 dropped as duplicates; "
                              "2 labels: neg, pos; vocabulary "), summary
    assert summary.endswith("; train 12, val 6, test 6"), summary


def test_speech_trains_with_augmentation_and_logs_its_metrics(speech_source):
    result, _ = speech_source
    assert set(result.best) >= TRAINED and set(result.test) == {"test_loss", "test_acc"}
    assert math.isfinite(result.best["val_loss"])
    assert "espeak-ng spoken digits" in result.data_summary and "2 words: zero, one" in result.data_summary


def test_speech_on_a_user_folder_of_wavs(tmp_path):
    write_speech_folder(tmp_path)
    data = {"source": "folder", "path": str(tmp_path), "val_fraction": 0.25, "test_fraction": 0.25,
            "clip_seconds": 0.4}
    assert SpeechData(**data).info["labels"] == ("high", "low")
    result = train(SPEECH_MODEL, TINY_SPEECH, SPEECH_DATA, data)
    assert math.isfinite(result.best["val_loss"])
    assert f"folder {tmp_path}: 8 clips read, 8 kept, 4 speakers" in result.data_summary
    assert result.data_summary.endswith("train 4, val 2, test 2")


@pytest.mark.parametrize("model, model_args, data, data_args", [
    (TEXT_MODEL, TINY_TEXT, TEXT_DATA, TINY_TEXT_DATA),
    (SPEECH_MODEL, TINY_SPEECH, SPEECH_DATA, {**TINY_SPEECH_DATA, "words": "zero,one"}),
])
def test_training_state_loads_as_data_and_resumes(tmp_path, model, model_args, data, data_args):
    """A retried sweep trial goes on from this state: the hyperparameters the modules save
    must load with weights_only=True."""
    state = tmp_path / "state.ckpt"
    train(model, model_args, data, data_args, state_path=state)
    reported = []
    result = train(model, model_args, data, data_args, epochs=2, resume_from=state,
                   on_epoch_end=lambda epoch, metrics: reported.append(epoch))
    assert result.resumed_from_epoch == 1 and reported == [2]


def test_defaults_that_differ_from_the_shared_classifier_stay_as_they_were():
    for model in (TextClassifier(), SpeechClassifier()):
        assert (model.learning_rate, model.optimizer_name, model.weight_decay) == (3e-3, "adamw", 1e-4)
        assert model.hparams["learning_rate"] == 3e-3


# ---- bad settings and missing data, caught when the DataModule is built


@pytest.mark.parametrize("init_args, error, match", [
    ({"source": "files"}, ValueError, "source is 'files' but path is not set"),
    ({"source": "files", "path": "{tmp}/absent.csv"}, MissingDataSource, r"path '.*absent.csv': no such file"),
    ({"source": "files", "path": "{tmp}/bad.csv"}, ValueError, r"path '.*bad.csv': expected CSV columns"),
    ({"source": "files", "path": "{tmp}/bad.jsonl"}, ValueError, r"path '.*bad.jsonl': the first record"),
    ({"path": "{tmp}/bad.csv"}, ValueError, "only read with source 'files'"),
    ({"categories": "zippy"}, ValueError, "categories 'zippy': expected at least two"),
    ({"categories": "zippy,no-such-category"}, MissingDataSource,
     "categories 'zippy,no-such-category': fortune categories no-such-category are missing"),
    ({"min_chars": 50, "max_chars": 20}, ValueError, "max_chars=20 is below min_chars=50"),
])
def test_text_data_rejects_bad_settings_when_built(tmp_path, init_args, error, match):
    (tmp_path / "bad.csv").write_text("sentence,category\nhello there,a\n")
    (tmp_path / "bad.jsonl").write_text('\n{"sentence": "hello there"}\n')
    init_args = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in init_args.items()}
    with pytest.raises(error, match=match):
        instantiate(TEXT_DATA, init_args)


@pytest.mark.parametrize("init_args, error, match", [
    ({"words": "five,eleven"}, ValueError, r"words 'five,eleven': \['eleven'\] are not among the spoken digits"),
    ({"words": "five"}, ValueError, "words 'five': name at least two words"),
    ({"source": "folder"}, ValueError, "source is 'folder' but path is not set"),
    ({"source": "folder", "path": "{tmp}/absent"}, MissingDataSource, r"path '.*absent': no such folder"),
    ({"source": "folder", "path": "{tmp}"}, MissingDataSource, "found no transcripts.csv"),
    ({"path": "{tmp}"}, ValueError, "only read with source 'folder'"),
])
def test_speech_data_rejects_bad_settings_when_built(tmp_path, init_args, error, match):
    init_args = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in init_args.items()}
    with pytest.raises(error, match=match):
        instantiate(SPEECH_DATA, init_args)


def test_missing_fortunes_say_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(text_data, "FORTUNES_DIR", tmp_path / "absent")
    with pytest.raises(MissingDataSource, match="apt-get install fortunes"):
        TextData()
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "zippy").write_text("Yow!\n%\n")
    with pytest.raises(MissingDataSource, match="categories 'zippy,computers': .*computers are missing "
                                                ".*apt-get install fortunes"):
        TextData(categories="zippy,computers")


def test_missing_speech_cache_says_what_to_install_or_run(monkeypatch, tmp_path):
    monkeypatch.setenv("FINESWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(speech_data.shutil, "which", lambda name: "/usr/bin/espeak-ng")
    with pytest.raises(MissingDataSource, match="scripts/prepare_data.py"):
        SpeechData()
    monkeypatch.setattr(speech_data.shutil, "which", lambda name: None)
    with pytest.raises(MissingDataSource, match="apt-get install espeak-ng"):
        SpeechData()


# ---- fine-tuning from a saved state dict


def test_text_fine_tunes_from_a_saved_state_dict(text_source, tmp_path):
    _, source = text_source
    state = torch.load(source, weights_only=True)
    # The layer names of the classes before they took their own arguments: old checkpoints load.
    rnn = {f"rnn.layers.0.{kind}_{part}_l0{direction}" for kind in ("weight", "bias") for part in ("ih", "hh")
           for direction in ("", "_reverse")}
    assert set(state) == {"label_ids", "embedding.weight", *rnn, "head.1.weight", "head.1.bias"}

    model = TextClassifier(**TINY_TEXT, init_from=str(source), frozen_layers=1)
    model.build_for(TextData(**TINY_TEXT_DATA).info)
    assert model.init_report == {"loaded": len(state) - 1, "head_reinitialised": False}
    assert torch.equal(model.embedding.weight, state["embedding.weight"])
    assert not model.embedding.weight.requires_grad and model.rnn.layers[0].weight_ih_l0.requires_grad

    tuned_path = tmp_path / "tuned.pt"
    result = train(TEXT_MODEL, {**TINY_TEXT, "init_from": str(source), "frozen_layers": 1}, TEXT_DATA,
                   TINY_TEXT_DATA, checkpoint_path=tuned_path)
    assert set(result.best) >= TRAINED
    tuned = torch.load(tuned_path, weights_only=True)
    assert torch.equal(tuned["embedding.weight"], state["embedding.weight"]), "the frozen block stays"
    assert not torch.equal(tuned["rnn.layers.0.weight_ih_l0"], state["rnn.layers.0.weight_ih_l0"])


def test_speech_fine_tunes_to_other_words_with_a_new_head(speech_source):
    _, source = speech_source
    state = torch.load(source, weights_only=True)
    assert {k.split(".")[0] for k in state} == {"label_ids", "rnn", "head"}
    model = SpeechClassifier(**{**TINY_SPEECH, "features": "mfcc", "pooling": "last"}, init_from=str(source),
                             frozen_layers=1)
    model.build_for(SpeechData(**{**TINY_SPEECH_DATA, "words": "two,three,four"}).info)
    assert model.init_report["head_reinitialised"]
    assert model.head[1].weight.shape[0] == 3
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {name for name in state if name.startswith("rnn.layers.0.")}
    for name in frozen:
        assert torch.equal(dict(model.named_parameters())[name], state[name]), name
