"""Text classifier: token embedding + stacked LSTM/GRU + pooling + linear head.

:class:`TextData` reads Debian's fortunes categories or the user's CSV/JSONL, then cleans,
de-duplicates and splits them (models/text_data.py) before a vocabulary is built from the
training split alone; its ``info`` gives :class:`TextClassifier` the vocabulary size and labels.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import torch
from finesweep.models import text_data
from finesweep.models.common import Classifier, NonNegative, Optimizer, Splits, TensorDataModule
from finesweep.models.components import Range
from finesweep.models.rnn import RecurrentStack, pool
from torch import nn


class TextClassifier(Classifier):
    """Embedding + LSTM/GRU text classifier; needs ``vocab_size`` and ``labels`` in the
    DataModule's ``info`` (as :class:`TextData` gives them)."""

    def __init__(
        self,
        cell: Literal["lstm", "gru"] = "gru",
        embedding_dim: Annotated[int, Range(1)] = 64,
        hidden_size: Annotated[int, Range(1)] = 128,
        layers: Annotated[int, Range(1, 4)] = 1,
        bidirectional: bool = True,
        pooling: Literal["last", "mean", "max"] = "max",
        dropout: Annotated[float, Range(0.0, 0.95)] = 0.3,
        learning_rate: Annotated[float, Range(0.0)] = 3e-3,
        optimizer: Optimizer = "adamw",
        weight_decay: NonNegative = 1e-4,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            cell: recurrent cell
            embedding_dim: token embedding width
            hidden_size: recurrent state width (per direction)
            layers: stacked recurrent layers
            bidirectional: read the text both ways
            pooling: how the per-token states become one vector
            dropout: dropout on embeddings, between layers and before the head
            learning_rate: peak learning rate (of the head; the backbone's is scaled)
            optimizer: adam, adamw or sgd
            weight_decay: L2 / decoupled weight decay
            **kwargs: the other optimizer and fine-tuning settings of :class:`Classifier`
        """
        super().__init__(learning_rate=learning_rate, optimizer=optimizer, weight_decay=weight_decay, **kwargs)
        self.save_hyperparameters()
        self.cell, self.embedding_dim, self.hidden_size, self.layers = cell, embedding_dim, hidden_size, layers
        self.bidirectional, self.pooling, self.dropout = bidirectional, pooling, dropout

    def build(self, info: Mapping[str, Any]) -> None:
        # Layer names as before the classes took their own arguments: older checkpoints still load.
        self.embedding = nn.Embedding(int(info["vocab_size"]), self.embedding_dim, padding_idx=text_data.PAD)
        self.embedding_dropout = nn.Dropout(self.dropout)
        self.rnn = RecurrentStack(self.cell, self.embedding_dim, self.hidden_size, self.layers,
                                  self.bidirectional, self.dropout)
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.rnn.output_size, len(info["labels"])))

    def backbone_blocks(self) -> list[nn.Module]:
        """The embedding, then each recurrent layer."""
        return [self.embedding, *self.rnn.layers]

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        lengths = (tokens != text_data.PAD).sum(1)
        states = self.rnn(self.embedding_dropout(self.embedding(tokens)), lengths)
        return self.head(pool(states, lengths, self.pooling, self.bidirectional))


@functools.lru_cache(maxsize=4)
def load_texts(source: str, categories: str, file: str | None, min_chars: int, max_chars: int,
               max_per_class: int, val_fraction: float, test_fraction: float,
               split_seed: int) -> text_data.TextSplits:
    """Cleaned, de-duplicated, split texts (``file``: an existing path, for ``source='files'``);
    cached per worker process."""
    rows = (text_data.read_labelled_file(file) if source == "files"
            else text_data.read_fortunes(text_data.parse_categories(categories)))
    splits = text_data.prepare(rows, min_chars=min_chars, max_chars=max_chars, max_per_class=max_per_class,
                               val_fraction=val_fraction, test_fraction=test_fraction, split_seed=split_seed)
    where = file if source == "files" else f"fortune categories {categories}"
    if len(splits.labels) < 2:
        raise ValueError(f"TextData: {where}: expected at least two labels after cleaning, found "
                         f"{list(splits.labels)} ({splits.report()})")
    empty = [name for name in ("train", "val", "test") if not getattr(splits, name)]
    if empty:
        raise ValueError(f"TextData: {where}: the {' and '.join(empty)} split is empty ({splits.report()}); "
                         "use more rows (max_per_class), or larger val_fraction / test_fraction")
    return splits


def _tensors(rows: list[tuple[str, int]], vocabulary: dict[str, int],
             max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    encoded = [text_data.encode(text, vocabulary, max_tokens) for text, _ in rows]
    tokens = torch.full((len(rows), max(map(len, encoded), default=1)), text_data.PAD, dtype=torch.int64)
    for row, ids in enumerate(encoded):
        tokens[row, :len(ids)] = torch.tensor(ids)
    return tokens, torch.tensor([label for _, label in rows], dtype=torch.int64)


@functools.lru_cache(maxsize=4)
def encode_texts(texts: tuple[Any, ...], max_tokens: int, min_freq: int, max_vocab: int) -> Splits:
    """Token ids (padded with :data:`text_data.PAD`) and labels per split, from
    ``load_texts(*texts)``; cached per worker process."""
    splits = load_texts(*texts)
    # The vocabulary sees the training split only: val/test words it lacks become unknown.
    vocabulary = text_data.build_vocabulary((t for t, _ in splits.train), min_freq=min_freq, max_size=max_vocab)
    source, categories, file = texts[:3]
    where = f"file {file}" if source == "files" else f"Debian fortunes ({categories})"
    return Splits(
        train=_tensors(splits.train, vocabulary, max_tokens),
        val=_tensors(splits.val, vocabulary, max_tokens),
        test=_tensors(splits.test, vocabulary, max_tokens),
        info={"vocab_size": len(vocabulary) + 2, "labels": splits.labels},
        summary=f"{where}: {splits.report()}; vocabulary {len(vocabulary) + 2} tokens",
    )


class TextData(TensorDataModule):
    """Labelled short texts: Debian's fortunes categories (real quotations), or the user's
    CSV/JSONL file. ``info``: ``vocab_size`` (ids 0 and 1 are padding and unknown) and ``labels``."""

    def __init__(
        self,
        source: Literal["fortunes", "files"] = "fortunes",
        categories: str = text_data.DEFAULT_CATEGORIES,
        path: str | None = None,
        val_fraction: Annotated[float, Range(0.05, 0.5)] = 0.15,
        test_fraction: Annotated[float, Range(0.05, 0.5)] = 0.15,
        split_seed: int = 0,
        min_chars: Annotated[int, Range(1)] = 10,
        max_chars: Annotated[int, Range(0)] = 600,
        max_per_class: Annotated[int, Range(0)] = 0,
        max_tokens: Annotated[int, Range(1)] = 120,
        min_freq: Annotated[int, Range(1)] = 2,
        max_vocab: Annotated[int, Range(3)] = 20000,
        batch_size: Annotated[int, Range(1)] = 64,
    ) -> None:
        """
        Args:
            source: fortunes: /usr/share/games/fortunes (Debian's fortunes package); files: `path`
            categories: comma-separated fortune categories, one label each (source fortunes)
            path: CSV (text,label columns) or JSONL file (source files); in a spec, relative to
                the spec's folder
            val_fraction: share held out for validation
            test_fraction: share held out for the final test only
            split_seed: seed of the train/val/test split; fixed, so val/test are the same in every
                trial and retraining and the test split never leaks into the search
            min_chars: shorter texts are dropped
            max_chars: longer texts are dropped (0: keep all)
            max_per_class: texts kept per label before splitting (0: all)
            max_tokens: tokens read per text (the rest is cut)
            min_freq: training-split count a token needs to enter the vocabulary
            max_vocab: vocabulary size cap
            batch_size: examples per optimizer step
        """
        super().__init__(batch_size=batch_size)
        self.source, self.categories, self.path = source, categories, path
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.min_chars, self.max_chars, self.max_per_class = min_chars, max_chars, max_per_class
        self.max_tokens, self.min_freq, self.max_vocab = max_tokens, min_freq, max_vocab
        # Checked now, cheaply (no corpus is read): a wrong setting fails once, not in every trial.
        self.file: str | None = None
        if max_chars and max_chars < min_chars:
            raise ValueError(f"TextData: max_chars={max_chars} is below min_chars={min_chars}, so every "
                             "text would be dropped (max_chars 0 keeps all)")
        if source == "files":
            if not path:
                raise ValueError("TextData: source is 'files' but path is not set: give a CSV (text,label "
                                 "columns) or a JSONL file")
            self.file = str(text_data.check_labelled_file(path, "TextData: path"))
        else:
            if path:
                raise ValueError(f"TextData: path {path!r} is only read with source 'files', but source "
                                 "is 'fortunes': set source: files to train on it")
            names = text_data.parse_categories(categories)
            if len(set(names)) < 2:
                raise ValueError(f"TextData: categories {categories!r}: expected at least two fortune "
                                 "categories, comma-separated, e.g. 'computers,zippy'")
            text_data.check_fortunes(names, where=f"TextData: categories {categories!r}: ")

    def _text_args(self) -> tuple[Any, ...]:
        return (self.source, self.categories, self.file, self.min_chars, self.max_chars, self.max_per_class,
                self.val_fraction, self.test_fraction, self.split_seed)

    def check_inputs(self) -> None:
        """The user's file read in full: encoding, CSV rows, labels, every split non-empty."""
        if self.file:
            self.load_splits()

    def load_splits(self) -> Splits:
        return encode_texts(self._text_args(), self.max_tokens, self.min_freq, self.max_vocab)

    def texts(self) -> text_data.TextSplits:
        """The cleaned texts per split before encoding (what the baselines read)."""
        return load_texts(*self._text_args())
