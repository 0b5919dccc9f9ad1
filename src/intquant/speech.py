"""Synthetic spoken command words: a keyword-spotting dataset made on this machine.

Nothing is downloaded: the words are spoken by Debian's espeak-ng (through its C library, about
2 ms per utterance) with many voices, speeds and pitches, placed at a random offset in a one
second clip at 16 kHz, mixed with noise at a random signal-to-noise ratio, and turned into MFCC
features in NumPy — 49 frames of 10 coefficients (40 ms windows, 20 ms hop, 40 mel bands), the
input of the MLPerf Tiny keyword-spotting models. Twelve classes as in Google Speech Commands:
ten command words, "silence" (noise only) and "unknown" (other words). Test speakers (voice
variants) never occur in training, so accuracy measures generalisation to new voices.

Everything is seeded, so the arrays are the same on every run with the same espeak-ng; they
are cached under ``data.cache_dir()``. Install espeak-ng with
``apt-get install --no-install-recommends espeak-ng`` (``make test`` does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import json
from dataclasses import dataclass

import numpy as np

SAMPLE_RATE = 16_000
CLIP_SAMPLES = SAMPLE_RATE  # one second
FRAME = 640  # 40 ms
HOP = 320  # 20 ms
MEL_BANDS = 40
MFCC_COEFFS = 10
FRAMES = 1 + (CLIP_SAMPLES - FRAME) // HOP  # 49

COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
UNKNOWN_WORDS = ("cat", "dog", "bird", "tree", "house", "zero", "one", "two", "three", "happy",
                 "wow", "bed", "marvin", "sheila", "learn", "visual")
LABELS = (*COMMANDS, "silence", "unknown")

# espeak-ng voices (accents) and variants (speakers); test speakers are disjoint from train.
ACCENTS = ("en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-gb-x-gbclan")
TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3", "croak", "klatt", "klatt2")
TEST_VARIANTS = ("m5", "m6", "f4", "f5", "klatt3")

_CACHE_VERSION = "1"


class SpeechSynthesisError(RuntimeError):
    """espeak-ng is missing or failed; the message says how to install it."""


class _Espeak:
    """The espeak-ng C library in synchronous mode, collecting samples through a callback."""

    _CALLBACK = ctypes.CFUNCTYPE(
        ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
    )
    _RATE, _PITCH = 1, 3  # espeakRATE, espeakPITCH
    _SYNCHRONOUS = 2  # AUDIO_OUTPUT_SYNCHRONOUS
    _POS_CHARACTER = 1

    def __init__(self) -> None:
        name = ctypes.util.find_library("espeak-ng")
        if name is None:
            raise SpeechSynthesisError(
                "espeak-ng is not installed: apt-get install --no-install-recommends espeak-ng "
                "(make test installs it)"
            )
        self.lib = ctypes.CDLL(name)
        self.rate = int(self.lib.espeak_Initialize(self._SYNCHRONOUS, 0, None, 0))
        if self.rate <= 0:
            raise SpeechSynthesisError("espeak-ng failed to initialise (espeak-ng-data missing?)")
        self.chunks: list[np.ndarray] = []
        self._keep = self._CALLBACK(self._collect)  # a reference, or ctypes frees it
        self.lib.espeak_SetSynthCallback(self._keep)

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    def say(self, word: str, voice: str, speed: int, pitch: int) -> np.ndarray:
        """int16 samples at ``self.rate`` of ``word`` spoken by ``voice``."""
        self.chunks = []
        if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise SpeechSynthesisError(f"espeak-ng has no voice {voice!r}")
        self.lib.espeak_SetParameter(self._RATE, speed, 0)
        self.lib.espeak_SetParameter(self._PITCH, pitch, 0)
        text = word.encode() + b"\0"
        self.lib.espeak_Synth(text, len(text), 0, self._POS_CHARACTER, 0, 0, None, None)
        self.lib.espeak_Synchronize()
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


@dataclass(frozen=True)
class Utterance:
    label: int
    word: str
    voice: str
    speed: int
    pitch: int


def utterances(variants: tuple[str, ...], per_class: int, rng: np.random.Generator
               ) -> list[Utterance]:
    """``per_class`` utterances of every label, speakers drawn from ``variants``."""
    out = []
    for label, name in enumerate(LABELS):
        for _ in range(per_class):
            if name == "unknown":
                word = str(rng.choice(UNKNOWN_WORDS))
            else:
                word = name
            voice = f"{rng.choice(ACCENTS)}+{rng.choice(variants)}"
            out.append(Utterance(label, word, voice, int(rng.integers(120, 221)),
                                 int(rng.integers(15, 86))))
    return out


def resample_to_16k(x: np.ndarray, rate: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = np.gcd(rate, SAMPLE_RATE)
    return resample_poly(x.astype(np.float64), SAMPLE_RATE // g, rate // g)


def place_in_clip(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The (trimmed) word at a random offset in a one-second clip, peak-normalised."""
    active = np.flatnonzero(np.abs(x) > 0.02 * max(np.abs(x).max(), 1e-9))
    if active.size:
        x = x[active[0] : active[-1] + 1]
    x = x[:CLIP_SAMPLES]
    clip = np.zeros(CLIP_SAMPLES)
    start = int(rng.integers(0, CLIP_SAMPLES - len(x) + 1))
    clip[start : start + len(x)] = x / max(np.abs(x).max(), 1e-9)
    return clip


def add_noise(clip: np.ndarray, rng: np.random.Generator, snr_db: float | None) -> np.ndarray:
    """White or pink-ish noise at ``snr_db`` (None: noise only, the "silence" class)."""
    noise = rng.standard_normal(CLIP_SAMPLES)
    if rng.random() < 0.5:  # pink-ish: integrate white noise lightly
        noise = np.convolve(noise, np.ones(8) / 8, mode="same")
    noise /= np.sqrt(np.mean(noise**2))
    if snr_db is None:
        return 0.05 * rng.uniform(0.2, 1.0) * noise
    signal_power = np.mean(clip**2)
    return clip + np.sqrt(signal_power / 10 ** (snr_db / 10)) * noise


def mel_filterbank() -> np.ndarray:
    """(MEL_BANDS, FRAME // 2 + 1) triangular filters on the HTK mel scale, 20 Hz – 8 kHz."""
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = hz(np.linspace(mel(20.0), mel(SAMPLE_RATE / 2), MEL_BANDS + 2))
    freqs = np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    return np.maximum(0.0, np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)))


def mfcc(clips: np.ndarray) -> np.ndarray:
    """(..., FRAMES, MFCC_COEFFS) of clips (..., CLIP_SAMPLES): Hann-windowed power spectra,
    log mel energies, orthonormal DCT-II."""
    idx = np.arange(FRAMES)[:, None] * HOP + np.arange(FRAME)[None, :]
    frames = clips[..., idx] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, axis=-1)) ** 2 / FRAME
    log_mel = np.log(power @ _FILTERS.T + 1e-6)
    n = np.arange(MEL_BANDS)
    k = np.arange(MFCC_COEFFS)[:, None]
    dct = np.sqrt(2.0 / MEL_BANDS) * np.cos(np.pi / MEL_BANDS * (n + 0.5) * k)
    dct[0] /= np.sqrt(2.0)
    return log_mel @ dct.T


_FILTERS = mel_filterbank()


def clip_of(u: Utterance, espeak: _Espeak, rng: np.random.Generator) -> np.ndarray:
    """The noisy one-second clip of one utterance."""
    if LABELS[u.label] == "silence":
        return add_noise(np.zeros(CLIP_SAMPLES), rng, None)
    wav = resample_to_16k(espeak.say(u.word, u.voice, u.speed, u.pitch), espeak.rate)
    return add_noise(place_in_clip(wav, rng), rng, float(rng.uniform(5.0, 30.0)))


def _features_in_fresh_process(items: list[Utterance], seed: int, split: int, first: int
                               ) -> np.ndarray:
    """MFCCs of ``items`` (utterances first, first+1, ... of a split).

    espeak-ng keeps state from one utterance to the next (the same word comes out slightly
    different the second time), and uses libc's rand(): so every chunk runs in a new process
    with rand seeded, and its utterances in a fixed order — the same samples on every run.
    """
    ctypes.CDLL("libc.so.6").srand(seed)
    espeak = _Espeak()
    clips = np.stack([
        clip_of(u, espeak, np.random.default_rng([seed, split, first + i]))
        for i, u in enumerate(items)
    ])
    return mfcc(clips).astype(np.float32)


def features(items: list[Utterance], seed: int, split: int, chunk: int = 400) -> np.ndarray:
    """MFCCs of all ``items``, in chunks of fixed size, each in a fresh process (two at once)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    starts = range(0, len(items), chunk)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn"),
                             max_tasks_per_child=1) as pool:
        parts = pool.map(_features_in_fresh_process, [items[s : s + chunk] for s in starts],
                         [seed] * len(starts), [split] * len(starts), list(starts))
        return np.concatenate(list(parts))


def espeak_version() -> str:
    name = ctypes.util.find_library("espeak-ng")
    return name or "missing"


def generate(train_per_class: int = 300, test_per_class: int = 100, seed: int = 0
             ) -> dict[str, np.ndarray]:
    """Train and test arrays; features standardised with the training mean and std."""
    _Espeak()  # fail here, with the install hint, rather than inside a worker
    rng = np.random.default_rng(seed)
    train = utterances(TRAIN_VARIANTS, train_per_class, rng)
    test = utterances(TEST_VARIANTS, test_per_class, rng)
    x_train, x_test = features(train, seed, 0), features(test, seed, 1)
    mean = x_train.mean(axis=(0, 1), keepdims=True)
    std = x_train.std(axis=(0, 1), keepdims=True)
    return {
        "x_train": ((x_train - mean) / std).astype(np.float32),
        "y_train": np.array([u.label for u in train], np.int64),
        "x_test": ((x_test - mean) / std).astype(np.float32),
        "y_test": np.array([u.label for u in test], np.int64),
    }


def load_speech_commands(train_per_class: int = 300, test_per_class: int = 100, seed: int = 0):
    """The dataset as ``data.Dataset`` (x: (N, 49, 10) float32 MFCCs, y: 12 classes), cached."""
    from .data import Dataset, cache_dir, load_npz, save_npz_atomic

    spec = {"v": _CACHE_VERSION, "train": train_per_class, "test": test_per_class,
            "seed": seed, "espeak": espeak_version()}
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"speech_commands-{key}.npz"
    arrays = load_npz(path)
    if arrays is None:
        arrays = generate(train_per_class, test_per_class, seed)
        save_npz_atomic(path, arrays)
    return Dataset(
        arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"],
        name="speech_commands", input_shape=(FRAMES, MFCC_COEFFS), num_classes=len(LABELS),
    )
