"""The synthetic spoken-command dataset: deterministic, and MFCCs that mean what they say."""

from __future__ import annotations

import numpy as np

from intquant import speech


def test_generation_is_deterministic_and_shaped():
    a = speech.generate(train_per_class=2, test_per_class=1, seed=3)
    b = speech.generate(train_per_class=2, test_per_class=1, seed=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    n_labels = len(speech.LABELS)
    assert a["x_train"].shape == (2 * n_labels, speech.FRAMES, speech.MFCC_COEFFS)
    assert a["x_test"].shape == (n_labels, speech.FRAMES, speech.MFCC_COEFFS)
    assert sorted(set(a["y_train"].tolist())) == list(range(n_labels))
    assert np.isfinite(a["x_train"]).all()


def test_test_speakers_are_unseen_in_training():
    assert not set(speech.TRAIN_VARIANTS) & set(speech.TEST_VARIANTS)


def test_spoken_words_differ_from_silence():
    """A spoken word carries far more energy in the speech bands than the silence class."""
    e = speech._Espeak()
    rng = np.random.default_rng(0)
    word = speech.place_in_clip(speech.resample_to_16k(e.say("left", "en-us", 160, 50), e.rate),
                                rng)
    silence = speech.add_noise(np.zeros(speech.CLIP_SAMPLES), rng, None)
    assert speech.mfcc(word)[:, 0].max() > speech.mfcc(silence)[:, 0].max() + 3


def test_mel_band_of_a_pure_tone():
    """A 1 kHz tone puts its largest log-mel energy in the band whose filter peaks nearest 1 kHz."""
    t = np.arange(speech.CLIP_SAMPLES) / speech.SAMPLE_RATE
    tone = np.sin(2 * np.pi * 1000.0 * t)
    frames = tone[: speech.FRAME] * np.hanning(speech.FRAME)
    band_energy = (np.abs(np.fft.rfft(frames)) ** 2) @ speech.mel_filterbank().T
    freqs = np.fft.rfftfreq(speech.FRAME, 1.0 / speech.SAMPLE_RATE)
    peaks = freqs[np.argmax(speech.mel_filterbank(), axis=1)]
    assert np.argmax(band_energy) == np.argmin(np.abs(peaks - 1000.0))


def test_dct_is_orthonormal():
    """mfcc's DCT-II rows are orthonormal, so MFCCs of a constant log-mel are only c0."""
    flat = np.full(speech.CLIP_SAMPLES, 0.0)
    c = speech.mfcc(flat)
    assert np.allclose(c[:, 1:], 0.0, atol=1e-9)
