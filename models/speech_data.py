"""Spoken-word audio for the speech task: the espeak-ng digits cache and the user's WAV folders.

The cache is real audio: the words "zero" to "nine" spoken by Debian's espeak-ng speech
synthesiser in 7 English accents x 12 voice variants (84 speakers), each word twice at a
random speed (120-220 words/min) and pitch (20-80), resampled to 11,025 Hz and trimmed.
It is built once (``python scripts/prepare_data.py``, run by scripts/setup.sh) into
``$FINESWEEP_CACHE/speech_digits`` (default ``~/.cache/finesweep/speech_digits``); a build
whose manifest matches is skipped. Background noise is mixed in at load time
(``noise_snr_db``), seeded, so val and test are noisy too. No torch here.
"""

from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import wave
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from finesweep.models.data_sources import MissingDataSource, cache_root, resolve_path

SAMPLE_RATE = 11025
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029")
VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
TAKES = 2
CACHE_VERSION = 1
ESPEAK_HINT = ("install Debian's espeak-ng and build the clips: `sudo apt-get install espeak-ng "
               "&& python scripts/prepare_data.py` (scripts/setup.sh does both when run as root)")


@dataclass(frozen=True)
class Clips:
    audio: list[np.ndarray]  # float32 waveforms at SAMPLE_RATE, peak 1
    words: list[str]
    speakers: list[str]


def cache_dir() -> Path:
    return cache_root() / "speech_digits"


def _manifest(words: Sequence[str] = WORDS, accents: Sequence[str] = ACCENTS,
              variants: Sequence[str] = VARIANTS, takes: int = TAKES) -> dict[str, object]:
    return {"version": CACHE_VERSION, "sample_rate": SAMPLE_RATE, "words": list(words),
            "accents": list(accents), "variants": list(variants), "takes": takes}


def cache_ready(directory: Path | None = None, manifest: dict[str, object] | None = None) -> bool:
    """Whether ``directory`` holds a finished build of exactly ``manifest`` (the default set)."""
    directory = directory or cache_dir()
    try:
        found = json.loads((directory / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return found == (manifest or _manifest()) and (directory / "clips.npz").is_file()


def _decode_wav_bytes(data: bytes) -> np.ndarray:
    """espeak-ng's --stdout WAV (mono 16-bit 22,050 Hz; its header sizes are placeholders)."""
    start = data.find(b"data") + 8
    samples = np.frombuffer(data[start:start + (len(data) - start) // 2 * 2], dtype="<i2")
    return samples.astype(np.float32) / 32768.0


def to_rate(audio: np.ndarray, rate: int) -> np.ndarray:
    """Linear-interpolation resampling to SAMPLE_RATE (halving averages pairs first, which
    also low-passes)."""
    if rate == SAMPLE_RATE:
        return audio
    if rate == 2 * SAMPLE_RATE:
        audio = audio[:len(audio) // 2 * 2]
        return audio.reshape(-1, 2).mean(1)
    length = max(1, round(len(audio) * SAMPLE_RATE / rate))
    return np.interp(np.linspace(0, len(audio) - 1, length), np.arange(len(audio)), audio).astype(np.float32)


def trim(audio: np.ndarray, threshold: float = 0.02) -> np.ndarray:
    """Leading and trailing silence removed (below ``threshold`` of the peak)."""
    loud = np.flatnonzero(np.abs(audio) >= threshold * (np.abs(audio).max() or 1.0))
    return audio[loud[0]:loud[-1] + 1] if len(loud) else audio


def synthesize(word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    result = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch),
                             "--stdout", word], capture_output=True, check=True, timeout=60)
    return trim(to_rate(_decode_wav_bytes(result.stdout), 22050))


def build_cache(directory: Path | None = None, *, force: bool = False, workers: int = 4,
                words: Sequence[str] = WORDS, accents: Sequence[str] = ACCENTS,
                variants: Sequence[str] = VARIANTS, takes: int = TAKES) -> bool:
    """Synthesise every clip into ``directory``; returns False when that exact set was
    already built there (the manifest matches), so running it again costs nothing."""
    directory = directory or cache_dir()
    manifest = _manifest(words, accents, variants, takes)
    if cache_ready(directory, manifest) and not force:
        return False
    if shutil.which("espeak-ng") is None:
        raise MissingDataSource(f"espeak-ng is not installed, so the spoken digits cannot be built; {ESPEAK_HINT}")
    rng = random.Random(0)
    jobs = [(word, f"{accent}+{variant}", rng.randint(120, 220), rng.randint(20, 80))
            for accent in accents for variant in variants for word in words for _ in range(takes)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        audio = list(pool.map(lambda job: synthesize(*job), jobs))
    directory.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(a) for a in audio], dtype=np.int64)
    # Written to temporary names first: an interrupted build never looks finished.
    with open(directory / "clips.tmp.npz", "wb") as handle:
        np.savez_compressed(
            handle, audio=(np.concatenate(audio) * 32767).astype(np.int16), lengths=lengths,
            words=np.array([job[0] for job in jobs]), speakers=np.array([job[1] for job in jobs]),
            speeds=np.array([job[2] for job in jobs]), pitches=np.array([job[3] for job in jobs]))
    os.replace(directory / "clips.tmp.npz", directory / "clips.npz")
    (directory / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return True


def check_cache(directory: Path | None = None) -> Path:
    """The built cache's folder; :class:`MissingDataSource` saying how to build it when there is
    none. Reads the manifest only, no audio."""
    directory = directory or cache_dir()
    try:
        built = json.loads((directory / "manifest.json").read_text()).get("version") == CACHE_VERSION
    except (OSError, ValueError, AttributeError):
        built = False
    if not built or not (directory / "clips.npz").is_file():
        if shutil.which("espeak-ng") is None:
            raise MissingDataSource(f"the spoken-digit clips are not built ({directory}) and espeak-ng "
                                    f"is not installed; {ESPEAK_HINT}")
        raise MissingDataSource(f"the spoken-digit clips are not built yet ({directory}); build them "
                                "with `python scripts/prepare_data.py` (scripts/setup.sh runs it)")
    return directory


def load_cache(directory: Path | None = None) -> Clips:
    directory = check_cache(directory)
    with np.load(directory / "clips.npz") as stored:
        flat = stored["audio"].astype(np.float32) / 32767
        ends = np.cumsum(stored["lengths"])
        audio = np.split(flat, ends[:-1])
        return Clips([normalise(a) for a in audio], [str(w) for w in stored["words"]],
                     [str(s) for s in stored["speakers"]])


def normalise(audio: np.ndarray) -> np.ndarray:
    """Peak 1, so noise levels mean the same for every clip."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    return (audio / peak).astype(np.float32) if peak > 0 else audio.astype(np.float32)


def read_wav(path: Path) -> np.ndarray:
    """A PCM WAV file (8/16/32-bit, any channels, any rate) as mono float32 at SAMPLE_RATE;
    ``ValueError`` naming the file when it is missing, not a PCM WAV, or its header is
    impossible (no channels, a sample rate of 0, no samples)."""
    try:
        with wave.open(str(path), "rb") as handle:
            width, channels, rate = handle.getsampwidth(), handle.getnchannels(), handle.getframerate()
            frames = handle.readframes(handle.getnframes())
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (wave.Error, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable PCM WAV file ({type(error).__name__}: "
                         f"{error or 'the file ends early'})") from None
    if channels < 1 or rate < 1:
        raise ValueError(f"{path}: impossible WAV header ({channels} channels, sample rate {rate} Hz)")
    if width == 1:
        audio = (np.frombuffer(frames, dtype=np.uint8).astype(np.float32) - 128) / 128
    elif width in (2, 4):
        audio = np.frombuffer(frames, dtype=f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    else:
        raise ValueError(f"{path}: {8 * width}-bit WAV is not supported (8, 16 or 32-bit PCM are)")
    if len(audio) < channels:
        raise ValueError(f"{path}: the WAV file holds no samples")
    return to_rate(audio[:len(audio) // channels * channels].reshape(-1, channels).mean(1), rate)


_FOLDER_HINT = "give a folder of WAV files with transcripts.csv (file,text) or one sub-folder per word"


def check_folder(value: str, argument: str = "path") -> Path:
    """The folder of the user's clips that ``value`` names, after a look at its listing and the
    header of its transcripts.csv only: :class:`MissingDataSource` when there are no clips,
    ``ValueError`` when transcripts.csv lacks the ``file`` and ``text`` columns."""
    root = resolve_path(value)
    if not root.is_dir():
        raise MissingDataSource(f"{argument} {value!r}: no such folder; {_FOLDER_HINT}")
    table = root / "transcripts.csv"
    if table.is_file():
        with table.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
            header = next(csv.reader(handle), [])
        if not {"file", "text"} <= set(header):
            raise ValueError(f"{argument} {value!r}: expected columns `file` and `text` (optional "
                             f"`speaker`) in {table}, found {header}")
    elif next(root.glob("*/*.wav"), None) is None:
        raise MissingDataSource(f"{argument} {value!r}: found no transcripts.csv and no <word>/*.wav files; "
                                f"{_FOLDER_HINT}")
    return root


def load_folder(value: str, argument: str = "path") -> Clips:
    """The user's clips: ``transcripts.csv`` (columns ``file,text``; optional ``speaker``) next
    to the WAV files, or else one sub-folder per word holding its WAV files."""
    root = check_folder(value, argument)
    table = root / "transcripts.csv"
    if table.is_file():
        try:
            with table.open(encoding="utf-8-sig", newline="") as handle:
                rows = [(root / (r["file"] or ""), (r["text"] or "").strip().lower(), r.get("speaker") or r["file"])
                        for r in csv.DictReader(handle)]
        except (UnicodeDecodeError, csv.Error) as error:
            raise ValueError(f"{argument} {value!r}: {table}: not a UTF-8 CSV table ({error})") from None
    else:
        rows = [(wav, wav.parent.name.lower(), wav.stem) for wav in sorted(root.glob("*/*.wav"))]
    if not rows:
        raise MissingDataSource(f"{argument} {value!r}: {table} lists no clips; {_FOLDER_HINT}")
    return Clips([normalise(trim(read_wav(path))) for path, _, _ in rows],
                 [word for _, word, _ in rows], [str(speaker) for _, _, speaker in rows])


def split_by_speaker(speakers: Sequence[str], val_fraction: float, test_fraction: float,
                     seed: int) -> tuple[list[int], list[int], list[int]]:
    """Clip indices of train/val/test with no speaker in two splits (so the metric measures
    unseen voices, not memorised ones)."""
    names = sorted(set(speakers))
    random.Random(seed).shuffle(names)
    n_test = max(1, round(len(names) * test_fraction))
    n_val = max(1, round(len(names) * val_fraction))
    test_names, val_names = set(names[:n_test]), set(names[n_test:n_test + n_val])
    split: tuple[list[int], list[int], list[int]] = ([], [], [])
    for index, speaker in enumerate(speakers):
        split[2 if speaker in test_names else 1 if speaker in val_names else 0].append(index)
    return split


def chosen_words(value: str | None) -> list[str]:
    """The ``words`` argument as a list: 'five, six' -> ['five', 'six']; unset -> [] (every word)."""
    return [word.strip() for word in (value or "").split(",") if word.strip()]
