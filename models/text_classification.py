"""Text classifier: token embedding + stacked LSTM/GRU + pooling + linear head.

Data (models/text_data.py): Debian's fortunes categories or the user's CSV/JSONL, cleaned,
de-duplicated and split before a vocabulary is built from the training split alone.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from finesweep.models import text_data
from finesweep.models.common import Classifier
from finesweep.models.data_sources import MissingDataSource
from finesweep.models.rnn import RecurrentStack, pool
from finesweep.models.tasks import TextClassifierConfig, TextDataConfig
from finesweep.models.training import DataBundle
from torch import nn


class TextClassifier(Classifier):
    def __init__(self, config: Mapping[str, Any], *, vocab_size: int, labels: Sequence[str],
                 max_epochs: int) -> None:
        cfg = TextClassifierConfig(**config)
        super().__init__(cfg, labels=labels, max_epochs=max_epochs)
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_dim, padding_idx=text_data.PAD)
        self.embedding_dropout = nn.Dropout(cfg.dropout)
        self.rnn = RecurrentStack(cfg.cell, cfg.embedding_dim, cfg.hidden_size, cfg.layers,
                                  cfg.bidirectional, cfg.dropout)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.rnn.output_size, len(labels)))
        self.finish_init()

    def backbone_blocks(self) -> list[nn.Module]:
        """The embedding, then each recurrent layer."""
        return [self.embedding, *self.rnn.layers]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != text_data.PAD).sum(1)
        states = self.rnn(self.embedding_dropout(self.embedding(tokens)), lengths)
        return self.head(pool(states, lengths, self.cfg.pooling, self.cfg.bidirectional))


def read_rows(cfg: TextDataConfig) -> list[tuple[str, str]]:
    if cfg.source == "files":
        if not cfg.path:
            raise MissingDataSource("data.source is files but data.path is empty: give a CSV "
                                    "(text,label columns) or a JSONL file")
        return text_data.read_labelled_file(cfg.path)
    return text_data.read_fortunes(text_data.parse_categories(cfg.categories))


@functools.lru_cache(maxsize=4)
def load_splits(cfg: TextDataConfig) -> text_data.TextSplits:
    """Cleaned, de-duplicated, split texts; cached per worker process."""
    splits = text_data.prepare(read_rows(cfg), min_chars=cfg.min_chars, max_chars=cfg.max_chars,
                               max_per_class=cfg.max_per_class, val_fraction=cfg.val_fraction,
                               test_fraction=cfg.test_fraction, split_seed=cfg.split_seed)
    if len(splits.labels) < 2:
        raise ValueError(f"text data: expected at least two labels after cleaning, found {list(splits.labels)}")
    return splits


def _tensors(rows: list[tuple[str, int]], vocabulary: dict[str, int],
             max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = [text_data.encode(text, vocabulary, max_tokens) for text, _ in rows]
    tokens = torch.full((len(rows), max(map(len, encoded), default=1)), text_data.PAD, dtype=torch.int64)
    for row, ids in enumerate(encoded):
        tokens[row, :len(ids)] = torch.tensor(ids)
    return tokens, torch.tensor([label for _, label in rows], dtype=torch.int64)


@functools.lru_cache(maxsize=4)
def _load(cfg: TextDataConfig) -> DataBundle:
    splits = load_splits(cfg)
    # The vocabulary sees the training split only: val/test words it lacks become unknown.
    vocabulary = text_data.build_vocabulary((t for t, _ in splits.train), min_freq=cfg.min_freq,
                                            max_size=cfg.max_vocab)
    return DataBundle(
        train=_tensors(splits.train, vocabulary, cfg.max_tokens),
        val=_tensors(splits.val, vocabulary, cfg.max_tokens),
        test=_tensors(splits.test, vocabulary, cfg.max_tokens),
        info={"vocab_size": len(vocabulary) + 2, "labels": splits.labels},
    )


def load_data(data: Mapping[str, Any]) -> DataBundle:
    return _load(TextDataConfig(**data))


def check_data(data: Mapping[str, Any]) -> str | None:
    """Why this data cannot be loaded (a message for the user), or None."""
    return text_data.check_data(data)


def build_model(config: Mapping[str, Any], bundle: DataBundle, max_epochs: int) -> TextClassifier:
    return TextClassifier(dict(config), max_epochs=max_epochs, **bundle.info)
