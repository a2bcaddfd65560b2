"""The text, speech and fine-tuning tasks: tiny real training runs, preprocessing without
duplicates or leakage, checkpoints loaded safely, data set-up and missing sources."""

from __future__ import annotations

import json
import math
import pickle
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from finesweep.models import speech_data, speech_recognition, text_classification, text_data
from finesweep.models.common import CheckpointMismatch
from finesweep.models.data_sources import MissingDataSource
from finesweep.models.image_classification import build_model as build_image_model
from finesweep.models.image_classification import load_data as load_digits
from finesweep.models.tasks import TASKS
from finesweep.models.training import fit

HAS_FORTUNES = text_data.check_data({}) is None
HAS_SPEECH = speech_data.cache_ready()
needs_fortunes = pytest.mark.skipif(not HAS_FORTUNES, reason="scripts/setup.sh installs fortunes")
needs_speech = pytest.mark.skipif(not HAS_SPEECH, reason="scripts/setup.sh builds the spoken digits")

TINY_TEXT_DATA = {"max_per_class": 12, "max_tokens": 16, "min_freq": 1,
                  "categories": "computers,zippy"}
TINY_TEXT = {"hidden_size": 8, "embedding_dim": 8, "batch_size": 16}
TINY_SPEECH_DATA = {"max_per_class": 5, "clip_seconds": 0.5}
TINY_SPEECH = {"hidden_size": 8, "layers": 1, "n_mels": 16, "batch_size": 16}
TINY_IMAGE = {"conv_layers": 2, "channels": 4, "hidden_units": 8, "normalization": "batch"}


def _fit(task: str, config: dict, data: dict, epochs: int = 1, **kwargs):
    return fit(task, TASKS[task].resolve(config), data, max_epochs=epochs, seed=0,
               metric="val_acc", mode="max", threads=1, **kwargs)


def _write_wav(path: Path, tone_hz: float, rate: int = 16000, seconds: float = 0.3) -> None:
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.5 * np.sin(2 * math.pi * tone_hz * t) * 32767).astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())


# ---- preprocessing


def test_preprocessing_drops_duplicates_garbage_and_never_shares_a_text_between_splits():
    rows = [("Hello, World!", "a"), ("hello   world", "a"),   # a normalised duplicate
            ("The cat sat on the mat today.", "a"), ("The cat sat on the mat today.", "a"),  # exact
            ("Shared by two labels here.", "a"), ("shared by two LABELS here", "b"),  # conflicting
            ("", "a"), ("   \t ", "b"), ("#### |||| ==== ####", "b"),  # empty and garbled
            ("B\bBo\bol\bld text about dogs.", "b")]  # overstriking is cleaned, not dropped
    rows += [(f"Sentence number {word} about label {label}.", label)
             for label in "ab" for word in ("one", "two", "three", "four", "five", "six", "seven")]
    splits = text_data.prepare(rows, val_fraction=0.25, test_fraction=0.25, split_seed=1)
    keys = {name: [text_data.dedup_key(t) for t, _ in getattr(splits, name)]
            for name in ("train", "val", "test")}
    everything = [k for part in keys.values() for k in part]
    assert len(everything) == len(set(everything)), "no text twice, within or across splits"
    assert "shared by two labels here" not in everything, "a text under two labels is dropped"
    assert everything.count("hello world") == 1
    assert "bold text about dogs" in everything
    assert splits.dropped == {"duplicate": 3, "conflicting_labels": 1, "empty": 2, "garbled": 1}
    assert splits.labels == ("a", "b")
    assert {y for _, y in splits.val} == {y for _, y in splits.test} == {0, 1}, "stratified"


def test_vocabulary_comes_from_the_training_split_only():
    vocabulary = text_data.build_vocabulary(["the cat sat", "the dog"], min_freq=1)
    assert set(vocabulary) == {"the", "cat", "sat", "dog"} and min(vocabulary.values()) == 2
    assert text_data.encode("the zebra!", vocabulary, 10) == [vocabulary["the"], text_data.UNK, text_data.UNK]


def test_user_csv_and_jsonl_files_load(tmp_path):
    (tmp_path / "t.csv").write_text('text,label\n"Good, really good",pos\nBad stuff here,neg\n')
    (tmp_path / "t.jsonl").write_text('{"text": "Good one", "label": "pos"}\n\n{"text": "x", "label": 3}\n')
    assert text_data.read_labelled_file(str(tmp_path / "t.csv")) == [("Good, really good", "pos"),
                                                                      ("Bad stuff here", "neg")]
    assert text_data.read_labelled_file(str(tmp_path / "t.jsonl")) == [("Good one", "pos"), ("x", "3")]


# ---- one short epoch per task on tiny data


def test_text_task_trains_one_epoch_on_user_file(tmp_path):
    lines = [{"text": f"{adjective} {noun} number {i}", "label": label}
             for i in range(30) for label, adjective, noun in (("x", "red", "apple"), ("y", "blue", "sky"))]
    path = tmp_path / "texts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines))
    for pooling in ("last", "mean", "max"):
        result = _fit("text_classification", {**TINY_TEXT, "pooling": pooling, "cell": "lstm", "layers": 2},
                      {"source": "files", "path": str(path), "min_freq": 1})
        assert set(result.best) >= {"train_loss", "val_loss", "val_acc"}


@needs_fortunes
def test_text_task_trains_one_epoch_on_fortunes():
    result = _fit("text_classification", TINY_TEXT, TINY_TEXT_DATA, evaluate_test=True)
    assert 0.0 <= result.best["val_acc"] <= 1.0 and set(result.test) == {"test_loss", "test_acc"}


@needs_speech
def test_speech_task_trains_one_epoch_with_augmentation():
    config = {**TINY_SPEECH, "features": "mfcc", "aug_noise": 0.1, "aug_shift": 0.05,
              "aug_freq_mask": 4, "aug_time_mask": 5}
    result = _fit("speech_recognition", config, TINY_SPEECH_DATA)
    assert math.isfinite(result.best["val_loss"])


@needs_fortunes
@needs_speech
@pytest.mark.parametrize("task, config, data", [
    ("text_classification", TINY_TEXT, TINY_TEXT_DATA),
    ("speech_recognition", TINY_SPEECH, TINY_SPEECH_DATA),
])
def test_training_state_of_every_task_loads_as_data_and_resumes(tmp_path, task, config, data):
    """A retried sweep trial goes on from this state; text and speech models keep their
    vocabulary and labels as hyperparameters, which must load with weights_only=True."""
    state = tmp_path / "state.ckpt"
    _fit(task, config, data, state_path=state)
    reported = []
    result = _fit(task, config, data, epochs=2, resume_from=state,
                  on_epoch_end=lambda epoch, metrics: reported.append(epoch))
    assert result.resumed_from_epoch == 1 and reported == [2]


def test_speech_folder_loader_reads_wavs_with_transcripts(tmp_path):
    rows = ["file,text,speaker"]
    for speaker in range(4):
        for word, tone in (("low", 300.0), ("high", 2000.0)):
            _write_wav(tmp_path / f"{word}_{speaker}.wav", tone + 10 * speaker)
            rows.append(f"{word}_{speaker}.wav,{word},s{speaker}")
    (tmp_path / "transcripts.csv").write_text("\n".join(rows))
    clips = speech_data.load_folder(str(tmp_path))
    assert sorted(set(clips.words)) == ["high", "low"] and len(clips.audio) == 8
    assert abs(len(clips.audio[0]) - 0.3 * speech_data.SAMPLE_RATE) < 5, "resampled to 11,025 Hz"
    data = {"source": "folder", "path": str(tmp_path), "val_fraction": 0.25, "test_fraction": 0.25,
            "clip_seconds": 0.4}
    bundle = speech_recognition.load_data(data)
    assert bundle.info["labels"] == ("high", "low")
    result = _fit("speech_recognition", TINY_SPEECH, data)
    assert math.isfinite(result.best["val_loss"])


def test_speaker_split_keeps_every_speaker_in_one_split():
    speakers = [f"s{i % 20}" for i in range(200)]
    train, val, test = speech_data.split_by_speaker(speakers, 0.15, 0.15, seed=0)
    groups = [{speakers[i] for i in part} for part in (train, val, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sorted(train + val + test) == list(range(200))


def test_mel_filterbank_covers_the_spectrum():
    bank = speech_recognition.mel_filterbank(20)
    assert bank.shape == (speech_recognition.N_FFT // 2 + 1, 20)
    assert (bank.sum(0) > 0).all(), "no empty filter"
    assert bank.argmax(0).diff().ge(0).all(), "centres rise with frequency"


# ---- image augmentation


def test_image_augmentation_is_identity_at_defaults_and_training_only():
    bundle = load_digits({})
    images = bundle.train[0][:8]
    plain = build_image_model(TASKS["image_classification"].resolve(TINY_IMAGE), bundle, 1)
    assert torch.equal(plain.augment(images), images)
    config = {**TINY_IMAGE, "aug_shift": 1, "aug_rotation": 10.0, "aug_noise": 0.1}
    model = build_image_model(TASKS["image_classification"].resolve(config), bundle, 1)
    torch.manual_seed(0)
    moved = model.augment(images)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    shift_only = build_image_model(TASKS["image_classification"].resolve({**TINY_IMAGE, "aug_shift": 2}),
                                   bundle, 1)
    assert shift_only.augment(images).min() >= images.min() - 1e-5, "empty pixels are background"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), model(images)), "evaluation is not augmented"


def test_digit_subset_and_small_training_set():
    bundle = load_digits({"classes": "5-9", "train_per_class": 10})
    assert bundle.info["labels"] == (5, 6, 7, 8, 9) and bundle.info["num_classes"] == 5
    assert len(bundle.train[1]) == 50 and torch.bincount(bundle.train[1]).tolist() == [10] * 5
    assert set(bundle.val[1].tolist()) == set(range(5)) and len(bundle.val[1]) > 150


@needs_speech
def test_spoken_word_subset_and_small_training_set():
    common = {"clip_seconds": 0.5, "split_seed": 0}
    full = speech_recognition.load_data({**common, "words": "five,six,seven,eight,nine"})
    small = speech_recognition.load_data({**common, "words": "nine,five,six,seven,eight", "train_per_class": 2})
    assert full.info["labels"] == small.info["labels"] == ("five", "six", "seven", "eight", "nine")
    assert torch.bincount(small.train[1]).tolist() == [2] * 5
    for part in ("val", "test"):  # only the training split shrinks
        assert torch.equal(getattr(full, part)[1], getattr(small, part)[1])
    with pytest.raises(ValueError, match="does not have"):
        speech_recognition.load_data({**common, "words": "five,eleven"})


# ---- fine-tuning


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pretrain") / "model.pt"
    _fit("image_classification", TINY_IMAGE, {"classes": "0-4"}, checkpoint_path=path)
    return path


def test_fine_tuning_loads_backbone_reinitialises_new_head_and_freezes(digits_checkpoint):
    state = torch.load(digits_checkpoint, weights_only=True)
    data = {"classes": "5-9", "train_per_class": 10}
    config = TASKS["image_classification"].resolve(
        {**TINY_IMAGE, "init_from": str(digits_checkpoint), "frozen_layers": 1,
         "backbone_lr_scale": 0.1, "warmup_epochs": 1})
    model = build_image_model(config, load_digits(data), 2)
    assert model.init_report["head_reinitialised"]
    assert torch.equal(model.backbone[0].weight, state["backbone.0.weight"])
    assert torch.equal(model.backbone[4].weight, state["backbone.4.weight"])
    assert not torch.equal(model.head[1].weight, state["head.1.weight"])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"]
    groups = model.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * 0.5, 1e-4 * 0.5]), "warm-up starts at half"

    # Training moves the unfrozen layers only, and the frozen block's batch-norm statistics stay.
    out = digits_checkpoint.parent / "finetuned.pt"
    fit("image_classification", config, data, max_epochs=1, seed=0, metric="val_acc", mode="max",
        threads=1, checkpoint_path=out)
    tuned = torch.load(out, weights_only=True)
    for key in ("backbone.0.weight", "backbone.1.running_mean"):
        assert torch.equal(tuned[key], state[key]), key
    assert not torch.equal(tuned["backbone.4.weight"], state["backbone.4.weight"])


def test_same_labels_keep_the_head(digits_checkpoint):
    state = torch.load(digits_checkpoint, weights_only=True)
    config = TASKS["image_classification"].resolve({**TINY_IMAGE, "init_from": str(digits_checkpoint)})
    model = build_image_model(config, load_digits({"classes": "0-4"}), 1)
    assert not model.init_report["head_reinitialised"]
    assert torch.equal(model.head[4].weight, state["head.4.weight"])


def test_checkpoints_load_as_data_only_and_must_fit(tmp_path, digits_checkpoint):
    bundle = load_digits({"classes": "5-9"})

    def build(**config):
        return build_image_model(TASKS["image_classification"].resolve({**TINY_IMAGE, **config}), bundle, 1)

    evil = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "payload": shutil.rmtree}, evil)
    with pytest.raises(pickle.UnpicklingError):
        build(init_from=str(evil))
    with pytest.raises(CheckpointMismatch, match="differ in shape"):
        build(init_from=str(digits_checkpoint), channels=6)
    with pytest.raises(CheckpointMismatch, match="no such file"):
        build(init_from=str(tmp_path / "missing.pt"))
    with pytest.raises(CheckpointMismatch, match="only 2 backbone layers"):
        build(frozen_layers=3)


@needs_speech
def test_speech_fine_tuning_to_other_words_reinitialises_the_head_and_freezes(tmp_path):
    source = tmp_path / "speech.pt"
    _fit("speech_recognition", TINY_SPEECH, {**TINY_SPEECH_DATA, "words": "zero,one"}, checkpoint_path=source)
    state = torch.load(source, weights_only=True)
    bundle = speech_recognition.load_data({**TINY_SPEECH_DATA, "words": "two,three,four"})
    config = TASKS["speech_recognition"].resolve({**TINY_SPEECH, "init_from": str(source), "frozen_layers": 1})
    model = speech_recognition.build_model(config, bundle, 1)
    assert model.init_report["head_reinitialised"]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    assert frozen and all(name.startswith("rnn.") for name in frozen)
    for name in frozen:
        assert torch.equal(dict(model.named_parameters())[name], state[name]), name


@needs_fortunes
def test_text_fine_tuning_keeps_the_embedding_of_the_same_vocabulary_and_freezes_it(tmp_path):
    source = tmp_path / "text.pt"
    _fit("text_classification", TINY_TEXT, TINY_TEXT_DATA, checkpoint_path=source)
    # The embedding rows are vocabulary ids, so a text checkpoint fits data with the same vocabulary.
    state = torch.load(source, weights_only=True)
    bundle = text_classification.load_data(TINY_TEXT_DATA)
    config = TASKS["text_classification"].resolve({**TINY_TEXT, "init_from": str(source), "frozen_layers": 1})
    model = text_classification.build_model(config, bundle, 1)
    assert not model.init_report["head_reinitialised"]
    assert torch.equal(model.embedding.weight, state["embedding.weight"])
    assert not model.embedding.weight.requires_grad and model.rnn.layers[0].weight_ih_l0.requires_grad


# ---- data set-up and missing sources


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="scripts/setup.sh installs espeak-ng")
def test_speech_cache_build_is_idempotent(tmp_path):
    settings = {"words": ("one", "two"), "accents": ("en",), "variants": ("m1", "f2"), "takes": 1}
    assert speech_data.build_cache(tmp_path, **settings)
    stamp = (tmp_path / "clips.npz").stat().st_mtime_ns
    assert not speech_data.build_cache(tmp_path, **settings), "a second build does nothing"
    assert (tmp_path / "clips.npz").stat().st_mtime_ns == stamp
    clips = speech_data.load_cache(tmp_path)
    assert sorted(clips.words) == ["one", "one", "two", "two"] and len(set(clips.speakers)) == 2
    assert all(0.1 < len(a) / speech_data.SAMPLE_RATE < 2.0 for a in clips.audio)
    assert not (tmp_path / "clips.tmp.npz").exists()


def test_missing_fortunes_raise_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(text_data, "FORTUNES_DIR", tmp_path / "absent")
    text_classification._load.cache_clear()
    text_classification.load_splits.cache_clear()
    with pytest.raises(MissingDataSource, match="apt-get install fortunes"):
        text_classification.load_data({"categories": "zippy,computers"})
    assert "apt-get install fortunes" in TASKS["text_classification"].check_data({})
    (tmp_path / "absent").mkdir()
    (tmp_path / "absent" / "zippy").write_text("Yow!\n%\n")
    with pytest.raises(MissingDataSource, match="computers are missing"):
        text_classification.load_data({"categories": "zippy,computers"})
    text_classification._load.cache_clear()
    text_classification.load_splits.cache_clear()


def test_missing_speech_data_raises_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("FINESWEEP_CACHE", str(tmp_path))
    monkeypatch.setattr(speech_data.shutil, "which", lambda name: None)
    speech_recognition._load.cache_clear()
    with pytest.raises(MissingDataSource, match="apt-get install espeak-ng"):
        speech_recognition.load_data({})
    assert "apt-get install espeak-ng" in TASKS["speech_recognition"].check_data({})
    with pytest.raises(MissingDataSource, match="apt-get install espeak-ng"):
        speech_data.build_cache(tmp_path / "new")
    speech_recognition._load.cache_clear()


def test_data_checks_pass_when_the_data_is_there():
    assert TASKS["debug"].check_data({}) is None
    assert TASKS["image_classification"].check_data({"classes": "0-4"}) is None
    assert "at least two digits" in TASKS["image_classification"].check_data({"classes": "3"})


# ---- a real sweep per task (2 trials)

SWEEP = """
name: {name}
task: {task}
data: {data}
metric: val_acc
space:
  learning_rate: {{type: float, low: 1.0e-3, high: 1.0e-2, log: true}}
{space}
strategy: {{name: random, seed: 0}}
scheduler: {{name: none}}
budget: {{trials: 2, max_epochs: 1}}
resources: {{cpus: 1, concurrency: 2}}
"""


def _sweep(tmp_path, name: str, task: str, data: dict, space: dict):
    from finesweep.search.spec import parse_spec
    from finesweep.search.study import load_study, state_counts
    from finesweep.search.sweep import run_sweep

    lines = "\n".join(f"  {k}: {json.dumps(v)}" for k, v in space.items())
    path = tmp_path / f"{name}.yaml"
    path.write_text(SWEEP.format(name=name, task=task, data=json.dumps(data), space=lines))
    spec = parse_spec(path)
    result = run_sweep(spec, tmp_path / "run")
    counts = state_counts(load_study(spec.name, result.storage))
    assert counts.get("COMPLETE", 0) == 2, counts
    # The export is what `launch.py train` reads back: every task's must parse as written.
    from finesweep.search.export import read_export

    assert read_export(result.run_dir / "best.yaml").task.name == task
    return result


@pytest.mark.slow
@needs_fortunes
def test_text_sweep_two_trials(tmp_path, local_ray):
    _sweep(tmp_path, "text_tiny", "text_classification", TINY_TEXT_DATA,
           {**TINY_TEXT, "cell": {"type": "categorical", "choices": ["lstm", "gru"]}})


@pytest.mark.slow
@needs_speech
def test_speech_sweep_two_trials(tmp_path, local_ray):
    _sweep(tmp_path, "speech_tiny", "speech_recognition", TINY_SPEECH_DATA,
           {**TINY_SPEECH, "aug_time_mask": {"type": "int", "low": 0, "high": 10}})


@pytest.mark.slow
def test_finetune_sweep_two_trials(tmp_path, local_ray, digits_checkpoint):
    _sweep(tmp_path, "finetune_tiny", "image_classification", {"classes": "5-9", "train_per_class": 10},
           {**TINY_IMAGE, "init_from": str(digits_checkpoint),
            "frozen_layers": {"type": "int", "low": 0, "high": 2},
            "backbone_lr_scale": {"type": "float", "low": 0.01, "high": 1.0, "log": True}})
