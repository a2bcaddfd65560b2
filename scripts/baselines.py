"""Baselines a sweep must beat, on exactly the splits the task trains on.

Usage:  python scripts/baselines.py spaces/text_rnn.yaml [more specs...]

- majority: always the most frequent training label.
- bag-of-words (text): logistic regression on tf-idf word unigrams+bigrams.
- bag-of-frames (speech): logistic regression on each clip's mean and std of log-mel features.
The regularisation C is chosen on val alone (test is scored once, for the chosen C); val and
test accuracy are printed, after the data's summary.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

if TYPE_CHECKING:
    from finesweep.models.speech_recognition import SpeechData
    from finesweep.models.text_classification import TextData


def _fit_logistic(train_x, train_y, val_x, val_y, test_x, test_y) -> tuple[float, float]:
    """Val and test accuracy of the C with the best val accuracy. Test is scored once, after the
    choice: on a tie in val the smallest C (the strongest regularisation) wins, never the best test."""
    from sklearn.linear_model import LogisticRegression

    best_val, best_model = -1.0, None
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=3000).fit(train_x, train_y)
        score = model.score(val_x, val_y)
        if score > best_val:
            best_val, best_model = score, model
    return best_val, best_model.score(test_x, test_y)


def _majority(train_y, val_y, test_y) -> tuple[float, float]:
    top = Counter(train_y).most_common(1)[0][0]
    return (sum(y == top for y in val_y) / len(val_y), sum(y == top for y in test_y) / len(test_y))


def text_baselines(data: TextData) -> dict[str, tuple[float, float]]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    splits = data.texts()
    texts = {name: [t for t, _ in getattr(splits, name)] for name in ("train", "val", "test")}
    labels = {name: [y for _, y in getattr(splits, name)] for name in ("train", "val", "test")}
    vectorizer = TfidfVectorizer(sublinear_tf=True, ngram_range=(1, 2), min_df=1)
    features = {"train": vectorizer.fit_transform(texts["train"])}
    features |= {name: vectorizer.transform(texts[name]) for name in ("val", "test")}
    return {
        "majority class": _majority(labels["train"], labels["val"], labels["test"]),
        "tf-idf + logistic regression": _fit_logistic(*(v for n in ("train", "val", "test")
                                                        for v in (features[n], labels[n]))),
    }


def speech_baselines(data: SpeechData) -> dict[str, tuple[float, float]]:
    import torch
    from finesweep.models.speech_recognition import Features

    data.setup()
    features = Features("logmel", 40)
    parts = {}
    for name in ("train", "val", "test"):
        audio, labels = getattr(data.splits, name)
        with torch.no_grad():
            frames = features(audio)
        parts[name] = (torch.cat([frames.mean(1), frames.std(1)], 1).numpy(), labels.tolist())
    return {
        "majority class": _majority(parts["train"][1], parts["val"][1], parts["test"][1]),
        "mean/std log-mel + logistic regression": _fit_logistic(*parts["train"], *parts["val"], *parts["test"]),
    }


def main(paths: list[str]) -> None:
    from finesweep.models.components import instantiate
    from finesweep.models.speech_recognition import SpeechData
    from finesweep.models.text_classification import TextData
    from finesweep.search.spec import parse_spec

    for path in paths:
        spec = parse_spec(Path(path))
        # The spec's own DataModule, so the baselines see exactly the splits its trials train on.
        data = instantiate(spec.data.class_path, spec.data.init_args)
        if isinstance(data, TextData):
            results = text_baselines(data)
        elif isinstance(data, SpeechData):
            results = speech_baselines(data)
        else:
            print(f"{path}: no baselines for data {spec.data.class_path}")
            continue
        print(f"{path}: {data.summary()}")
        for name, (val, test) in results.items():
            print(f"{path}: {name}: val_acc {val:.4f}, test_acc {test:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
