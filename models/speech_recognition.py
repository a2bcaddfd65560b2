"""Spoken-word recogniser: log-mel (or MFCC) features computed with torch.stft and a mel
filterbank built here, a stacked GRU/LSTM, pooling over frames and a linear head; trained
with cross-entropy, reported as word accuracy (``val_acc``).

Augmentation (training batches only, all searchable): white noise on the waveform, a random
time shift, and SpecAugment-style frequency and time masks on the features.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from finesweep.models import speech_data
from finesweep.models.common import Classifier
from finesweep.models.data_sources import MissingDataSource
from finesweep.models.rnn import RecurrentStack, pool
from finesweep.models.tasks import SpeechConfig, SpeechDataConfig
from finesweep.models.training import DataBundle
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
    def __init__(self, config: Mapping[str, Any], *, labels: Sequence[str], max_epochs: int) -> None:
        cfg = SpeechConfig(**config)
        super().__init__(cfg, labels=labels, max_epochs=max_epochs)
        self.save_hyperparameters()
        self.features = Features(cfg.features, cfg.n_mels)
        self.rnn = RecurrentStack(cfg.cell, self.features.size, cfg.hidden_size, cfg.layers,
                                  cfg.bidirectional, cfg.dropout)
        self.head = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(self.rnn.output_size, len(labels)))
        self.finish_init()

    def backbone_blocks(self) -> list[nn.Module]:
        """Each recurrent layer (the features have no weights)."""
        return list(self.rnn.layers)

    def augment(self, audio: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        if cfg.aug_shift:
            # Rolling is a shift: every clip sits in silence, so what wraps around is quiet.
            limit = int(cfg.aug_shift * speech_data.SAMPLE_RATE)
            shifts = torch.randint(-limit, limit + 1, (len(audio),)).tolist()
            audio = torch.stack([torch.roll(clip, s) for clip, s in zip(audio, shifts, strict=True)])
        if cfg.aug_noise:
            audio = audio + cfg.aug_noise * torch.randn_like(audio)
        return audio

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        features = self.features(audio)
        if self.training and (self.cfg.aug_freq_mask or self.cfg.aug_time_mask):
            features = spec_augment(features, self.cfg.aug_freq_mask, self.cfg.aug_time_mask)
        lengths = torch.full((len(audio),), features.shape[1], dtype=torch.int64)
        states = self.rnn(features, lengths)
        return self.head(pool(states, lengths, self.cfg.pooling, self.cfg.bidirectional))


def read_clips(cfg: SpeechDataConfig) -> speech_data.Clips:
    if cfg.source == "folder":
        if not cfg.path:
            raise MissingDataSource("data.source is folder but data.path is empty: give a folder of "
                                    "WAV files with transcripts.csv, or one sub-folder per word")
        return speech_data.load_folder(cfg.path)
    return speech_data.load_cache()


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
def _load(cfg: SpeechDataConfig) -> DataBundle:
    clips = read_clips(cfg)
    wanted = speech_data.chosen_words(cfg.words)
    absent = sorted(set(wanted) - set(clips.words))
    if absent:
        raise ValueError(f"speech data: data.words names {absent}, which the data does not have "
                         f"(it has {sorted(set(clips.words))})")
    # Digit words in numeric order, any others alphabetically after them.
    order = {word: i for i, word in enumerate(speech_data.WORDS)}
    labels = tuple(sorted(set(wanted or clips.words), key=lambda w: (order.get(w, len(order)), w)))
    if len(labels) < 2:
        raise ValueError(f"speech data: expected at least two words, found {list(labels)}")
    index = {word: i for i, word in enumerate(labels)}
    keep = [i for i, word in enumerate(clips.words) if word in index]
    if cfg.max_per_class:
        seen: Counter[str] = Counter()
        kept = []
        for i in keep:
            seen[clips.words[i]] += 1
            if seen[clips.words[i]] <= cfg.max_per_class:
                kept.append(i)
        keep = kept
    rng = np.random.default_rng(cfg.split_seed)
    samples = int(cfg.clip_seconds * speech_data.SAMPLE_RATE)
    audio = np.stack([fixed_length(clips.audio[i], samples) for i in keep])
    # Recording noise at a fixed signal-to-noise ratio, the same draw in every trial.
    speech_power = np.array([np.mean(clips.audio[i] ** 2) for i in keep], dtype=np.float32)
    noise_std = np.sqrt(speech_power / 10 ** (cfg.noise_snr_db / 10))[:, None]
    audio = (audio + noise_std * rng.standard_normal(audio.shape)).astype(np.float32)
    words = torch.tensor([index[clips.words[i]] for i in keep], dtype=torch.int64)
    parts = speech_data.split_by_speaker([clips.speakers[i] for i in keep], cfg.val_fraction,
                                         cfg.test_fraction, cfg.split_seed)
    if cfg.train_per_class:
        # Only the training split shrinks (a seeded draw per word): val and test stay as they are.
        train = [parts[0][j] for j in rng.permutation(len(parts[0]))]
        per_word: Counter[int] = Counter()
        small = []
        for position in train:
            label = int(words[position])
            per_word[label] += 1
            if per_word[label] <= cfg.train_per_class:
                small.append(position)
        parts = (sorted(small), parts[1], parts[2])
    tensor = torch.from_numpy(audio)

    def take(indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        chosen = torch.tensor(indices, dtype=torch.int64)
        return tensor[chosen], words[chosen]

    return DataBundle(train=take(parts[0]), val=take(parts[1]), test=take(parts[2]),
                      info={"labels": labels})


def load_data(data: Mapping[str, Any]) -> DataBundle:
    return _load(SpeechDataConfig(**data))


def check_data(data: Mapping[str, Any]) -> str | None:
    """Why this data cannot be loaded (a message for the user), or None."""
    return speech_data.check_data(data)


def build_model(config: Mapping[str, Any], bundle: DataBundle, max_epochs: int) -> SpeechClassifier:
    return SpeechClassifier(dict(config), max_epochs=max_epochs, **bundle.info)

