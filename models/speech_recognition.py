"""Spoken-word recogniser: log-mel (or MFCC) features computed with torch.stft and a mel
filterbank built here, a stacked GRU/LSTM, pooling over frames and a linear head; trained
with cross-entropy, reported as word accuracy (``val_acc``).

Augmentation (training batches only, all searchable): white noise on the waveform, a random
time shift, and SpecAugment-style frequency and time masks on the features.

:class:`SpeechData` gives fixed-length noisy waveforms split by speaker (models/speech_data.py
reads the clips); its ``info`` gives :class:`SpeechClassifier` the words (``labels``).
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import numpy as np
import torch
from finesweep.models import speech_data
from finesweep.models.common import Classifier, NonNegative, Optimizer, Splits, TensorDataModule
from finesweep.models.components import Range
from finesweep.models.rnn import RecurrentStack, pool
from torch import nn

N_FFT = 256  # 23 ms windows at 11,025 Hz
HOP = 110  # 10 ms hops: 100 frames a second


def mel_filterbank(n_mels: int, n_fft: int = N_FFT, rate: int = speech_data.SAMPLE_RATE,
                   low_hz: float = 40.0) -> torch.Tensor:
    """(n_fft // 2 + 1, n_mels) triangular filters evenly spaced on the HTK mel scale."""
    def to_mel(hz: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges_mel = np.linspace(to_mel(np.array(low_hz)), to_mel(np.array(rate / 2)), n_mels + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    bins = np.linspace(0, rate / 2, n_fft // 2 + 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None, :] - lower) / (centre - lower)
    falling = (upper - bins[None, :]) / (upper - centre)
    return torch.from_numpy(np.clip(np.minimum(rising, falling), 0.0, None).T.astype(np.float32))


def dct_matrix(n_mels: int, n_coefficients: int) -> torch.Tensor:
    """Orthonormal DCT-II, (n_mels, n_coefficients): log-mel -> MFCC."""
    k = np.arange(n_coefficients)[None, :]
    n = np.arange(n_mels)[:, None]
    basis = np.cos(np.pi / n_mels * (n + 0.5) * k) * np.sqrt(2.0 / n_mels)
    basis[:, 0] /= np.sqrt(2.0)
    return torch.from_numpy(basis.astype(np.float32))


class Features(nn.Module):
    """Waveforms (batch, samples) -> per-utterance normalised features (batch, frames, dims)."""

    def __init__(self, kind: str, n_mels: int) -> None:
        super().__init__()
        # Not persistent: derived from the config, so checkpoints hold learned weights only.
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("mel", mel_filterbank(n_mels), persistent=False)
        self.register_buffer("dct", dct_matrix(n_mels, max(8, n_mels // 2)) if kind == "mfcc"
                             else torch.empty(0), persistent=False)
        self.size = self.dct.shape[1] if kind == "mfcc" else n_mels

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        spectrum = torch.stft(audio, N_FFT, HOP, window=self.window, return_complex=True)
        power = spectrum.abs().pow(2).transpose(1, 2)  # (batch, frames, bins)
        features = torch.log(power @ self.mel + 1e-6)
        if self.dct.numel():
            features = features @ self.dct
        features = features - features.mean(1, keepdim=True)
        return features / (features.std(dim=(1, 2), keepdim=True) + 1e-5)


def spec_augment(features: torch.Tensor, freq_width: int, time_width: int) -> torch.Tensor:
    """One frequency band and one run of frames per example set to 0 (the normalised mean)."""
    batch, frames, dims = features.shape
    keep = torch.ones_like(features, dtype=torch.bool)
    for width, size, axis in ((freq_width, dims, 2), (time_width, frames, 1)):
        if not width:
            continue
        widths = torch.randint(0, min(width, size) + 1, (batch,), device=features.device)
        starts = (torch.rand(batch, device=features.device) * (size - widths + 1)).long()
        positions = torch.arange(size, device=features.device)[None, :]
        band = (positions >= starts[:, None]) & (positions < (starts + widths)[:, None])
        keep &= ~(band[:, None, :] if axis == 2 else band[:, :, None])
    return features * keep


class SpeechClassifier(Classifier):
    """Log-mel (or MFCC) features + GRU/LSTM spoken-word classifier on waveforms at
    :data:`speech_data.SAMPLE_RATE`; needs ``labels`` in the DataModule's ``info``."""

    def __init__(
        self,
        features: Literal["logmel", "mfcc"] = "logmel",
        n_mels: Annotated[int, Range(8, 128)] = 40,
        cell: Literal["lstm", "gru"] = "gru",
        hidden_size: Annotated[int, Range(1)] = 96,
        layers: Annotated[int, Range(1, 4)] = 2,
        bidirectional: bool = True,
        pooling: Literal["last", "mean", "max"] = "mean",
        dropout: Annotated[float, Range(0.0, 0.95)] = 0.2,
        aug_noise: Annotated[float, Range(0.0, 1.0)] = 0.0,
        aug_shift: Annotated[float, Range(0.0, 0.5)] = 0.0,
        aug_freq_mask: Annotated[int, Range(0)] = 0,
        aug_time_mask: Annotated[int, Range(0)] = 0,
        learning_rate: Annotated[float, Range(0.0)] = 3e-3,
        optimizer: Optimizer = "adamw",
        weight_decay: NonNegative = 1e-4,
        **kwargs: Any,
    ) -> None:
        """
        Args:
            features: per-frame features
            n_mels: mel filters
            cell: recurrent cell
            hidden_size: recurrent state width (per direction)
            layers: stacked recurrent layers
            bidirectional: read the audio both ways
            pooling: how frames become one vector
            dropout: dropout between layers and before the head
            aug_noise: std of white noise added to the waveform (clips are peak-normalised to 1;
                training batches only)
            aug_shift: random time shift of up to this many seconds (training batches only)
            aug_freq_mask: SpecAugment: widest masked band of mel channels (training batches only)
            aug_time_mask: SpecAugment: widest masked run of frames (training batches only)
            learning_rate: peak learning rate (of the head; the backbone's is scaled)
            optimizer: adam, adamw or sgd
            weight_decay: L2 / decoupled weight decay
            **kwargs: the other optimizer and fine-tuning settings of :class:`Classifier`
        """
        super().__init__(learning_rate=learning_rate, optimizer=optimizer, weight_decay=weight_decay, **kwargs)
        self.save_hyperparameters()
        # `features` names the feature module once built, as it always has; the kind is kept here.
        self.feature_kind, self.n_mels, self.cell, self.hidden_size = features, n_mels, cell, hidden_size
        self.layers, self.bidirectional, self.pooling, self.dropout = layers, bidirectional, pooling, dropout
        self.aug_noise, self.aug_shift = aug_noise, aug_shift
        self.aug_freq_mask, self.aug_time_mask = aug_freq_mask, aug_time_mask

    def build(self, info: Mapping[str, Any]) -> None:
        # Layer names as before the classes took their own arguments: older checkpoints still load.
        self.features = Features(self.feature_kind, self.n_mels)
        self.rnn = RecurrentStack(self.cell, self.features.size, self.hidden_size, self.layers,
                                  self.bidirectional, self.dropout)
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.rnn.output_size, len(info["labels"])))

    def backbone_blocks(self) -> list[nn.Module]:
        """Each recurrent layer (the features have no weights)."""
        return list(self.rnn.layers)

    def augment(self, audio: torch.Tensor) -> torch.Tensor:
        if self.aug_shift:
            # Rolling is a shift: every clip sits in silence, so what wraps around is quiet.
            limit = int(self.aug_shift * speech_data.SAMPLE_RATE)
            shifts = torch.randint(-limit, limit + 1, (len(audio),)).tolist()
            audio = torch.stack([torch.roll(clip, s) for clip, s in zip(audio, shifts, strict=True)])
        if self.aug_noise:
            audio = audio + self.aug_noise * torch.randn_like(audio)
        return audio

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = self.features(audio)
        if self.training and (self.aug_freq_mask or self.aug_time_mask):
            features = spec_augment(features, self.aug_freq_mask, self.aug_time_mask)
        lengths = torch.full((len(audio),), features.shape[1], dtype=torch.int64, device=audio.device)
        states = self.rnn(features, lengths)
        return self.head(pool(states, lengths, self.pooling, self.bidirectional))


def fixed_length(clip: np.ndarray, samples: int) -> np.ndarray:
    """The clip centred in ``samples`` of silence (cut at both ends when longer)."""
    if len(clip) >= samples:
        start = (len(clip) - samples) // 2
        return clip[start:start + samples]
    out = np.zeros(samples, dtype=np.float32)
    start = (samples - len(clip)) // 2
    out[start:start + len(clip)] = clip
    return out


@functools.lru_cache(maxsize=4)
def load_speech(source: str, folder: str | None, noise_snr_db: float, val_fraction: float,
                test_fraction: float, split_seed: int, max_per_class: int, clip_seconds: float,
                words: str | None, train_per_class: int) -> Splits:
    """Fixed-length noisy waveforms and word ids per split, no speaker in two splits
    (``folder``: an existing folder, for ``source='folder'``); cached per worker process."""
    clips = speech_data.load_folder(folder) if source == "folder" else speech_data.load_cache()
    where = f"folder {folder}" if source == "folder" else f"espeak-ng spoken digits ({speech_data.cache_dir()})"
    wanted = speech_data.chosen_words(words)
    absent = sorted(set(wanted) - set(clips.words))
    if absent:
        raise ValueError(f"SpeechData: words names {absent}, which the data does not have "
                         f"(it has {sorted(set(clips.words))})")
    # Digit words in numeric order, any others alphabetically after them.
    order = {word: i for i, word in enumerate(speech_data.WORDS)}
    labels = tuple(sorted(set(wanted or clips.words), key=lambda w: (order.get(w, len(order)), w)))
    if len(labels) < 2:
        raise ValueError(f"SpeechData: {where}: expected at least two words, found {list(labels)}")
    index = {word: i for i, word in enumerate(labels)}
    keep = [i for i, word in enumerate(clips.words) if word in index]
    if max_per_class:
        seen: Counter[str] = Counter()
        kept = []
        for i in keep:
            seen[clips.words[i]] += 1
            if seen[clips.words[i]] <= max_per_class:
                kept.append(i)
        keep = kept
    rng = np.random.default_rng(split_seed)
    samples = int(clip_seconds * speech_data.SAMPLE_RATE)
    audio = np.stack([fixed_length(clips.audio[i], samples) for i in keep])
    # Recording noise at a fixed signal-to-noise ratio, the same draw in every trial.
    speech_power = np.array([np.mean(clips.audio[i] ** 2) for i in keep], dtype=np.float32)
    noise_std = np.sqrt(speech_power / 10 ** (noise_snr_db / 10))[:, None]
    audio = (audio + noise_std * rng.standard_normal(audio.shape)).astype(np.float32)
    word_ids = torch.tensor([index[clips.words[i]] for i in keep], dtype=torch.int64)
    speakers = [clips.speakers[i] for i in keep]
    parts = speech_data.split_by_speaker(speakers, val_fraction, test_fraction, split_seed)
    if train_per_class:
        # Only the training split shrinks (a seeded draw per word): val and test stay as they are.
        train = [parts[0][j] for j in rng.permutation(len(parts[0]))]
        per_word: Counter[int] = Counter()
        small = []
        for position in train:
            label = int(word_ids[position])
            per_word[label] += 1
            if per_word[label] <= train_per_class:
                small.append(position)
        parts = (sorted(small), parts[1], parts[2])
    empty = [name for name, part in zip(("train", "val", "test"), parts, strict=True) if not part]
    if empty:
        raise ValueError(f"SpeechData: {where}: the {' and '.join(empty)} split is empty "
                         f"({len(set(speakers))} speakers); use more clips or speakers")
    tensor = torch.from_numpy(audio)

    def take(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.tensor(indices, dtype=torch.int64)
        return tensor[chosen], word_ids[chosen]

    summary = (f"{where}: {len(clips.words)} clips read, {len(keep)} kept, {len(set(speakers))} speakers "
               f"(none in two splits), {clip_seconds:g} s each, noise at {noise_snr_db:g} dB SNR; "
               f"{len(labels)} words: {', '.join(labels)}")
    return Splits(train=take(parts[0]), val=take(parts[1]), test=take(parts[2]), info={"labels": labels},
                  summary=summary)


class SpeechData(TensorDataModule):
    """Spoken words: digits synthesised offline with espeak-ng (real audio, built by
    scripts/prepare_data.py), or the user's folder of WAV files with transcripts. Each batch is
    (waveforms at 11,025 Hz, word ids); ``info``: ``labels`` (the words)."""

    def __init__(
        self,
        source: Literal["espeak_digits", "folder"] = "espeak_digits",
        path: str | None = None,
        noise_snr_db: Annotated[float, Range(-10.0)] = 20.0,
        val_fraction: Annotated[float, Range(0.05, 0.5)] = 0.15,
        test_fraction: Annotated[float, Range(0.05, 0.5)] = 0.15,
        split_seed: int = 0,
        max_per_class: Annotated[int, Range(0)] = 0,
        clip_seconds: Annotated[float, Range(0.1, 10.0)] = 1.0,
        words: str | None = None,
        train_per_class: Annotated[int, Range(0)] = 0,
        batch_size: Annotated[int, Range(1)] = 64,
    ) -> None:
        """
        Args:
            source: espeak_digits: the built cache; folder: `path`
            path: folder of WAV files plus transcripts.csv (file,text), or one sub-folder per word
                (source folder); in a spec, relative to the spec's folder
            noise_snr_db: background noise mixed into every clip, as a signal-to-noise ratio in dB
                (recording noise)
            val_fraction: share of speakers held out for validation
            test_fraction: share of speakers held out for the final test only
            split_seed: seed of the speaker split and the noise
            max_per_class: clips kept per word (0: all)
            clip_seconds: clips are cut or padded to this length
            words: words kept, comma-separated, e.g. zero,one,two (unset: every word)
            train_per_class: training clips kept per word (0: all): a small target set for fine-tuning
            batch_size: examples per optimizer step
        """
        super().__init__(batch_size=batch_size)
        self.source, self.path, self.noise_snr_db = source, path, noise_snr_db
        self.val_fraction, self.test_fraction, self.split_seed = val_fraction, test_fraction, split_seed
        self.max_per_class, self.clip_seconds, self.words = max_per_class, clip_seconds, words
        self.train_per_class = train_per_class
        # Checked now, cheaply (no audio is read): a wrong setting fails once, not in every trial.
        self.folder: str | None = None
        wanted = speech_data.chosen_words(words)
        if source == "espeak_digits" and set(wanted) - set(speech_data.WORDS):
            raise ValueError(f"SpeechData: words {words!r}: {sorted(set(wanted) - set(speech_data.WORDS))} "
                             f"are not among the spoken digits ({', '.join(speech_data.WORDS)})")
        if wanted and len(set(wanted)) < 2:
            raise ValueError(f"SpeechData: words {words!r}: name at least two words, comma-separated")
        if source == "folder":
            if not path:
                raise ValueError("SpeechData: source is 'folder' but path is not set: give a folder of WAV "
                                 "files with transcripts.csv (file,text) or one sub-folder per word")
            self.folder = str(speech_data.check_folder(path, "SpeechData: path"))
        else:
            if path:
                raise ValueError(f"SpeechData: path {path!r} is only read with source 'folder', but source "
                                 "is 'espeak_digits': set source: folder to train on it")
            speech_data.check_cache()

    def check_inputs(self) -> None:
        """The user's clips read in full: transcripts, WAV headers, words, every split non-empty."""
        if self.folder:
            self.load_splits()

    def load_splits(self) -> Splits:
        return load_speech(self.source, self.folder, self.noise_snr_db, self.val_fraction, self.test_fraction,
                           self.split_seed, self.max_per_class, self.clip_seconds, self.words,
                           self.train_per_class)
