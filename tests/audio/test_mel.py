import librosa
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import speechlike, stream_in_chunks
from stepaudio.audio import (
    LogMelStream,
    load_audio,
    log10_mel,
    log_mel_spectrogram,
    mel_spectrogram,
    normalize_log_mel,
)
from stepaudio.audio.mel import mel_filters

whisper = pytest.importorskip("whisper")


@pytest.mark.parametrize(
    "args", [(16000, 400, 80, 0.0, None), (16000, 400, 128, 0.0, None), (22050, 1024, 80, 0.0, 8000.0)]
)
def test_mel_filters_match_librosa(args):
    rate, n_fft, n_mels, fmin, fmax = args
    ref = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax)
    np.testing.assert_allclose(mel_filters(*args).numpy(), ref, atol=1e-7)


@pytest.mark.parametrize("n_mels", [80, 128])
@pytest.mark.parametrize("padding", [0, 4321])
def test_whisper_log_mel_matches_openai_whisper(n_mels, padding):
    x = speechlike(3.3, 16000, seed=n_mels)
    ref = whisper.log_mel_spectrogram(torch.from_numpy(x), n_mels=n_mels, padding=padding)
    ours = log_mel_spectrogram(x, n_mels=n_mels, padding=padding)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)


def test_whisper_log_mel_on_real_speech(speech_path):
    x, _ = load_audio(speech_path)
    ref = whisper.log_mel_spectrogram(torch.from_numpy(x), n_mels=128)
    torch.testing.assert_close(log_mel_spectrogram(x, n_mels=128), ref, atol=1e-4, rtol=0)


def test_whisper_log_mel_refuses_bad_input():
    with pytest.raises(ValueError, match="80 or 128"):
        log_mel_spectrogram(speechlike(1, 16000), n_mels=64)
    with pytest.raises(ValueError, match="more than 200 samples"):
        log_mel_spectrogram(np.zeros(100, np.float32))


@settings(max_examples=40, deadline=None)
@given(seconds=st.floats(0.02, 1.2), chunks=st.lists(st.integers(1, 4000), min_size=1, max_size=30))
def test_log_mel_stream_equals_offline(seconds, chunks):
    x = speechlike(seconds, 16000, seed=int(seconds * 1000))
    stream = LogMelStream(n_mels=80)
    pieces = stream_in_chunks(stream, x, chunks)
    streamed = torch.cat(pieces, dim=1)
    offline = log10_mel(x, 80)
    assert streamed.shape == offline.shape
    torch.testing.assert_close(streamed, offline, atol=1e-5, rtol=0)
    # Whisper's per-utterance normalisation applied to the streamed frames gives Whisper's features.
    ref = whisper.log_mel_spectrogram(torch.from_numpy(x), n_mels=80)
    torch.testing.assert_close(normalize_log_mel(streamed), ref, atol=1e-4, rtol=0)


def librosa_decoder_mel(x: np.ndarray) -> np.ndarray:
    """The CosyVoice/HiFi-GAN mel built from librosa: reflect pad 384, sqrt(|STFT|^2 + 1e-9), slaney mel,
    ln with a 1e-5 floor (the 1e-9 inside the root is CosyVoice's, and matters near the floor)."""
    padded = np.pad(x, (384, 384), mode="reflect")
    spec = librosa.stft(padded, n_fft=1024, hop_length=256, win_length=1024, window="hann", center=False)
    magnitude = np.sqrt(np.abs(spec) ** 2 + 1e-9)
    filters = librosa.filters.mel(sr=22050, n_fft=1024, n_mels=80, fmin=0, fmax=8000)
    return np.log(np.maximum(filters @ magnitude, 1e-5))


def test_decoder_mel_matches_librosa():
    x = speechlike(2.1, 22050, seed=5)
    ours = mel_spectrogram(x).numpy()
    ref = librosa_decoder_mel(x)
    assert ours.shape == ref.shape == (80, len(x) // 256)
    np.testing.assert_allclose(ours, ref, atol=1e-3)


def test_decoder_mel_on_real_speech_and_batches(speech_path):
    x, _ = load_audio(speech_path, 22050)
    ours = mel_spectrogram(x).numpy()
    np.testing.assert_allclose(ours, librosa_decoder_mel(x), atol=1e-3)
    batch = mel_spectrogram(np.stack([x, x[::-1].copy()]))
    assert batch.shape == (2, 80, len(x) // 256)
    torch.testing.assert_close(batch[0], torch.from_numpy(ours))
