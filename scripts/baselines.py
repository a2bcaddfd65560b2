"""Baselines a sweep must beat, on exactly the splits the task trains on.

Usage:  python scripts/baselines.py spaces/text_rnn.yaml [more specs...]

- majority: always the most frequent training label.
- bag-of-words (text): logistic regression on tf-idf word unigrams+bigrams.
- bag-of-frames (speech): logistic regression on each clip's mean and std of log-mel features.
The regularisation C is chosen on val; val and test accuracy are printed.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _fit_logistic(train_x, train_y, val_x, val_y, test_x, test_y) -> tuple[float, float]:
    from sklearn.linear_model import LogisticRegression

    best = (-1.0, 0.0)
    for c in (0.1, 1.0, 10.0, 100.0):
        model = LogisticRegression(C=c, max_iter=3000).fit(train_x, train_y)
        score = (model.score(val_x, val_y), model.score(test_x, test_y))
        best = max(best, score)
    return best


def _majority(train_y, val_y, test_y) -> tuple[float, float]:
    top = Counter(train_y).most_common(1)[0][0]
    return (sum(y == top for y in val_y) / len(val_y), sum(y == top for y in test_y) / len(test_y))


def text_baselines(data: dict) -> dict[str, tuple[float, float]]:
    from finesweep.models.tasks import TextDataConfig
    from finesweep.models.text_classification import load_splits
    from sklearn.feature_extraction.text import TfidfVectorizer

    splits = load_splits(TextDataConfig(**data))
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


def speech_baselines(data: dict) -> dict[str, tuple[float, float]]:
    import torch
    from finesweep.models.speech_recognition import Features, load_data

    bundle = load_data(data)
    features = Features("logmel", 40)
    parts = {}
    for name in ("train", "val", "test"):
        audio, labels = getattr(bundle, name)
        with torch.no_grad():
            frames = features(audio)
        parts[name] = (torch.cat([frames.mean(1), frames.std(1)], 1).numpy(), labels.tolist())
    return {
        "majority class": _majority(parts["train"][1], parts["val"][1], parts["test"][1]),
        "mean/std log-mel + logistic regression": _fit_logistic(*parts["train"], *parts["val"], *parts["test"]),
    }


def main(paths: list[str]) -> None:
    from finesweep.search.spec import parse_spec

    for path in paths:
        spec = parse_spec(Path(path))
        data = spec.resolved_data()
        if spec.task.name == "text_classification":
            results = text_baselines(data)
        elif spec.task.name == "speech_recognition":
            results = speech_baselines(data)
        else:
            print(f"{path}: no baselines for task {spec.task.name}")
            continue
        for name, (val, test) in results.items():
            print(f"{path}: {name}: val_acc {val:.4f}, test_acc {test:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:])
