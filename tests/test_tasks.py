"""The built-in tasks' data and models below a training run: text preprocessing without
duplicates or leakage, speech splits and features, digits augmentation and subsets, digits
fine-tuning, data set-up and missing sources; then a real two-trial sweep of the built-in
spaces through the command line.

Training, fine-tuning and resuming the text and speech tasks is in test_builtin_text_speech.py;
the training loop itself in test_training.py. The fortunes and spoken digits come from
scripts/setup.sh; where they are missing, the tests that need them fail with the install hint.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml
from finesweep.models import speech_data, text_data
from finesweep.models.common import CheckpointMismatch
from finesweep.models.components import instantiate
from finesweep.models.data_sources import MissingDataSource
from finesweep.models.image_classification import DigitsData, ImageClassifier
from finesweep.models.run import TrainingRun
from finesweep.models.speech_recognition import N_FFT, SpeechData, mel_filterbank
from finesweep.models.tasks import TASKS
from finesweep.models.training import fit, make_trainer
from test_builtin_text_speech import write_speech_folder

ROOT = Path(__file__).resolve().parents[1]
IMAGE = TASKS["image_classification"]
TINY_IMAGE = {"conv_layers": 2, "channels": 4, "hidden_units": 8, "normalization": "batch"}


def image_run(model_args: dict, data_args: dict, epochs: int = 1) -> TrainingRun:
    return TrainingRun(model={"class_path": IMAGE.model, "init_args": {**TINY_IMAGE, **model_args}},
                       data={"class_path": IMAGE.data, "init_args": data_args},
                       trainer={}, max_epochs=epochs, seed=0, metric="val_acc", mode="max")


def image_model(data: DigitsData, **model_args) -> ImageClassifier:
    """The CNN built for ``data`` as training builds it (``init_from`` loaded, blocks frozen)."""
    data.setup()
    model = ImageClassifier(**{**TINY_IMAGE, **model_args})
    model.build_for(data.info)
    return model


# ---- text preprocessing


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


# ---- speech data and features


def test_speech_folder_loader_reads_wavs_with_transcripts_at_the_model_rate(tmp_path):
    write_speech_folder(tmp_path)
    clips = speech_data.load_folder(str(tmp_path))
    assert sorted(set(clips.words)) == ["high", "low"] and len(clips.audio) == 8
    assert sorted(set(clips.speakers)) == ["s0", "s1", "s2", "s3"]
    assert abs(len(clips.audio[0]) - 0.3 * speech_data.SAMPLE_RATE) < 5, "resampled to 11,025 Hz"


def test_speaker_split_keeps_every_speaker_in_one_split():
    speakers = [f"s{i % 20}" for i in range(200)]
    train, val, test = speech_data.split_by_speaker(speakers, 0.15, 0.15, seed=0)
    groups = [{speakers[i] for i in part} for part in (train, val, test)]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    assert sorted(train + val + test) == list(range(200))


def test_mel_filterbank_covers_the_spectrum():
    bank = mel_filterbank(20)
    assert bank.shape == (N_FFT // 2 + 1, 20)
    assert (bank.sum(0) > 0).all(), "no empty filter"
    assert bank.argmax(0).diff().ge(0).all(), "centres rise with frequency"


def test_spoken_word_subset_and_small_training_set():
    common = {"clip_seconds": 0.5, "split_seed": 0}
    full = SpeechData(**common, words="five,six,seven,eight,nine")
    small = SpeechData(**common, words="nine,five,six,seven,eight", train_per_class=2)
    full.setup()
    small.setup()
    assert full.info["labels"] == small.info["labels"] == ("five", "six", "seven", "eight", "nine")
    assert torch.bincount(small.splits.train[1]).tolist() == [2] * 5
    for part in ("val", "test"):  # only the training split shrinks
        assert torch.equal(getattr(full.splits, part)[1], getattr(small.splits, part)[1])


# ---- digits augmentation and subsets


def test_image_augmentation_is_identity_at_defaults_and_training_only():
    data = DigitsData()
    data.setup()
    images = data.splits.train[0][:8]
    plain = image_model(data)
    assert torch.equal(plain.augment(images), images)
    model = image_model(data, aug_shift=1, aug_rotation=10.0, aug_noise=0.1)
    torch.manual_seed(0)
    moved = model.augment(images)
    assert moved.shape == images.shape and not torch.allclose(moved, images)
    shift_only = image_model(data, aug_shift=2)
    assert shift_only.augment(images).min() >= images.min() - 1e-5, "empty pixels are background"
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(images), model(images)), "evaluation is not augmented"


def test_digit_subset_and_small_training_set():
    data = DigitsData(classes="5-9", train_per_class=10)
    data.setup()
    train_labels, val_labels = data.splits.train[1], data.splits.val[1]
    assert data.info["labels"] == (5, 6, 7, 8, 9)
    assert len(train_labels) == 50 and torch.bincount(train_labels).tolist() == [10] * 5
    assert set(val_labels.tolist()) == set(range(5)) and len(val_labels) > 150


# ---- digits fine-tuning


@pytest.fixture(scope="module")
def digits_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pretrain") / "model.pt"
    fit(image_run({}, {"classes": "0-4"}), threads=1, checkpoint_path=path)
    return path


def test_fine_tuning_loads_backbone_reinitialises_new_head_and_freezes(digits_checkpoint):
    state = torch.load(digits_checkpoint, weights_only=True)
    tuning = {"init_from": str(digits_checkpoint), "frozen_layers": 1, "backbone_lr_scale": 0.1, "warmup_epochs": 1}
    target = {"classes": "5-9", "train_per_class": 10}
    run = image_run(tuning, target, epochs=2)
    model = image_model(DigitsData(**target), **tuning)
    assert model.init_report["head_reinitialised"]
    assert torch.equal(model.backbone[0].weight, state["backbone.0.weight"])
    assert torch.equal(model.backbone[4].weight, state["backbone.4.weight"])
    assert not torch.equal(model.head[1].weight, state["head.1.weight"])
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert frozen == ["backbone.0.weight", "backbone.0.bias", "backbone.1.weight", "backbone.1.bias"]
    model.trainer = make_trainer(run, [])
    groups = model.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-3 * 0.5, 1e-4 * 0.5]), "warm-up starts at half"

    # Training moves the unfrozen layers only, and the frozen block's batch-norm statistics stay.
    out = digits_checkpoint.parent / "finetuned.pt"
    fit(run.with_changes(max_epochs=1), threads=1, checkpoint_path=out)
    tuned = torch.load(out, weights_only=True)
    for key in ("backbone.0.weight", "backbone.1.running_mean"):
        assert torch.equal(tuned[key], state[key]), key
    assert not torch.equal(tuned["backbone.4.weight"], state["backbone.4.weight"])


def test_same_labels_keep_the_head(digits_checkpoint):
    state = torch.load(digits_checkpoint, weights_only=True)
    model = image_model(DigitsData(classes="0-4"), init_from=str(digits_checkpoint))
    assert not model.init_report["head_reinitialised"]
    assert torch.equal(model.head[4].weight, state["head.4.weight"])


def test_checkpoints_load_as_data_only_and_must_fit(tmp_path, digits_checkpoint):
    data = DigitsData(classes="5-9")
    evil = tmp_path / "evil.pt"
    torch.save({"weights": torch.zeros(1), "payload": shutil.rmtree}, evil)
    with pytest.raises(CheckpointMismatch, match="weights only .it holds Python objects besides tensors"):
        image_model(data, init_from=str(evil))
    with pytest.raises(CheckpointMismatch, match="differ in shape"):
        image_model(data, init_from=str(digits_checkpoint), channels=6)
    with pytest.raises(CheckpointMismatch, match="no such file"):
        image_model(data, init_from=str(tmp_path / "missing.pt"))
    with pytest.raises(CheckpointMismatch, match="only 2 backbone layers"):
        image_model(data, frozen_layers=3)


# ---- data set-up and missing sources


def test_every_builtin_task_builds_from_its_class_paths_with_its_data_there():
    """Building a DataModule checks that its data is on this machine (without reading it):
    the fortunes and the spoken-digit cache must be installed, or this fails with the hint."""
    for alias in TASKS.values():
        assert isinstance(instantiate(alias.data, {}), pl.LightningDataModule), alias.name
        assert isinstance(instantiate(alias.model, {}), pl.LightningModule), alias.name
    with pytest.raises(ValueError, match="at least two digits"):
        DigitsData(classes="3")


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


def test_building_the_speech_cache_without_espeak_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(speech_data.shutil, "which", lambda name: None)
    with pytest.raises(MissingDataSource, match="apt-get install espeak-ng"):
        speech_data.build_cache(tmp_path / "new")
    assert not (tmp_path / "new").exists()


# ---- a real sweep of each built-in space (2 trials of 1 epoch, on a slice of its data)


def sweep_space(space: str, tmp_path: Path, *extra: str, data: dict | None = None, params: dict | None = None,
                out: Path | None = None) -> Path:
    """Run ``spaces/<space>.yaml`` through ``launch.py sweep`` with 2 trials of 1 epoch, its
    ``data`` and fixed ``params`` changed (a small slice of the data); the run directory."""
    from finesweep.search.cli import main
    from finesweep.search.views.export import read_export
    from finesweep.search.views.results import load_sweep

    spec = yaml.safe_load((ROOT / "spaces" / f"{space}.yaml").read_text())
    spec["data"] = {**spec["data"], **(data or {})}
    spec["space"] = {**spec["space"], **(params or {})}
    path = tmp_path / f"{space}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    out = out or tmp_path / "run"
    assert main(["sweep", str(path), "--trials", "2", "--max-epochs", "1", "--out", str(out), *extra]) == 0
    record = load_sweep(out)
    assert [t.state.name for t in record.study.trials] == ["COMPLETE", "COMPLETE"]
    # The export is what `launch.py train` reads back: every task's must parse as written.
    alias = TASKS[spec["task"]]
    exported = read_export(out / "best.yaml")
    assert exported.record["task"] == spec["task"]
    assert (exported.run.model["class_path"], exported.run.data["class_path"]) == (alias.model, alias.data)
    return out


@pytest.mark.slow
def test_text_space_sweeps_two_trials(tmp_path, local_ray):
    sweep_space("text_rnn", tmp_path, data={"max_per_class": 12, "min_freq": 1})


@pytest.mark.slow
def test_speech_space_sweeps_two_trials(tmp_path, local_ray):
    sweep_space("speech_rnn", tmp_path, data={"max_per_class": 5, "clip_seconds": 0.5})


@pytest.mark.slow
def test_digits_pretrain_then_finetune_spaces_sweep_two_trials(tmp_path, local_ray):
    """The documented two-step example: sweep digits_pretrain, retrain its best config with
    `launch.py train`, then sweep digits_finetune from those weights."""
    from finesweep.search.cli import main

    pretrain = sweep_space("digits_pretrain", tmp_path, out=tmp_path / "digits_pretrain")
    assert main(["train", str(pretrain / "best.yaml")]) == 0
    weights = pretrain / "retrain" / "model.pt"
    assert weights.is_file()
    sweep_space("digits_finetune", tmp_path, params={"init_from": str(weights)}, out=tmp_path / "finetune")
