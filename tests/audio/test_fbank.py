import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import speechlike, stream_in_chunks, write_am_mvn
from stepaudio.audio import Cmvn, ParaformerFrontend, kaldi_fbank, lfr, load_audio
from stepaudio.errors import CheckpointError, ModelNotFound

funasr_frontend = pytest.importorskip("funasr.frontends.wav_frontend")


def kaldi_fbank_reference(x: np.ndarray, num_bins: int = 80, window: str = "hamming") -> np.ndarray:
    """Kaldi's compute-fbank-feats, restated in float64 numpy from Kaldi's feature-window/mel-computations."""
    rate, length, shift, n_fft = 16000, 400, 160, 512
    i = np.arange(length)
    if window == "hamming":
        win = 0.54 - 0.46 * np.cos(2 * np.pi * i / (length - 1))
    else:  # povey
        win = (0.5 - 0.5 * np.cos(2 * np.pi * i / (length - 1))) ** 0.85

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    low, high = mel(20.0), mel(rate / 2)
    delta = (high - low) / (num_bins + 1)
    bin_mels = mel(rate / n_fft * np.arange(n_fft // 2))
    banks = np.zeros((num_bins, n_fft // 2 + 1))
    for b in range(num_bins):
        left, center, right = low + b * delta, low + (b + 1) * delta, low + (b + 2) * delta
        up, down = (bin_mels - left) / (center - left), (right - bin_mels) / (right - center)
        inside = (bin_mels > left) & (bin_mels < right)
        banks[b, : n_fft // 2] = np.where(inside, np.where(bin_mels <= center, up, down), 0.0)
    frames = []
    for t in range(1 + (len(x) - length) // shift):
        f = x[t * shift : t * shift + length].astype(np.float64)
        f = f - f.mean()
        f = np.concatenate([[f[0] - 0.97 * f[0]], f[1:] - 0.97 * f[:-1]]) * win
        power = np.abs(np.fft.rfft(f, n_fft)) ** 2
        frames.append(np.log(np.maximum(banks @ power, np.finfo(np.float32).eps)))
    return np.array(frames)


@pytest.mark.parametrize("window", ["hamming", "povey"])
def test_fbank_matches_kaldi(window):
    x = speechlike(1.234, 16000, seed=1) * 32768
    ours = kaldi_fbank(x, window=window)
    ref = kaldi_fbank_reference(x, window=window)
    assert ours.shape == ref.shape == (1 + (len(x) - 400) // 160, 80)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


def test_fbank_matches_kaldi_on_real_speech(speech_path):
    x, _ = load_audio(speech_path)
    np.testing.assert_allclose(kaldi_fbank(x * 32768), kaldi_fbank_reference(x * 32768), atol=2e-3, rtol=1e-4)


@settings(max_examples=60, deadline=None)
@given(frames=st.integers(1, 80), m=st.sampled_from([7, 5, 1]), n=st.sampled_from([6, 3, 1]))
def test_lfr_matches_funasr(frames, m, n):
    feats = np.random.default_rng(frames).standard_normal((frames, 4)).astype(np.float32)
    ref = funasr_frontend.apply_lfr(torch.from_numpy(feats), m, n).numpy()
    np.testing.assert_array_equal(lfr(feats, m, n), ref)


def test_cmvn_matches_funasr(tmp_path):
    rng = np.random.default_rng(0)
    shift, scale = -rng.uniform(5, 15, 560).astype(np.float32), rng.uniform(0.1, 0.5, 560).astype(np.float32)
    write_am_mvn(tmp_path / "am.mvn", shift, scale)
    cmvn = Cmvn.from_kaldi(tmp_path / "am.mvn")
    ref_table = funasr_frontend.load_cmvn(str(tmp_path / "am.mvn"))
    np.testing.assert_array_equal(cmvn.shift, ref_table[0].numpy())
    np.testing.assert_array_equal(cmvn.scale, ref_table[1].numpy())
    feats = rng.standard_normal((9, 560)).astype(np.float32) * 10
    ref = funasr_frontend.apply_cmvn(torch.from_numpy(feats.copy()), ref_table).numpy()
    np.testing.assert_allclose(cmvn(feats), ref, rtol=1e-6)


def test_cmvn_errors(tmp_path):
    with pytest.raises(ModelNotFound, match="am.mvn"):
        Cmvn.from_kaldi(tmp_path / "am.mvn")
    (tmp_path / "bad.mvn").write_text("<Nnet>\n</Nnet>\n")
    with pytest.raises(CheckpointError, match="no <AddShift>"):
        Cmvn.from_kaldi(tmp_path / "bad.mvn")


def test_paraformer_frontend_is_fbank_lfr_cmvn(tmp_path):
    rng = np.random.default_rng(1)
    write_am_mvn(tmp_path / "am.mvn", rng.uniform(-12, -8, 560), rng.uniform(0.1, 0.3, 560))
    frontend = ParaformerFrontend(Cmvn.from_kaldi(tmp_path / "am.mvn"))
    x = speechlike(2.0, 16000)
    table = funasr_frontend.load_cmvn(str(tmp_path / "am.mvn"))
    fbank = torch.from_numpy(kaldi_fbank_reference(x * 32768).astype(np.float32))
    ref = funasr_frontend.apply_cmvn(funasr_frontend.apply_lfr(fbank, 7, 6), table).numpy()
    ours = frontend(x)
    assert ours.shape == (np.ceil((1 + (len(x) - 400) // 160) / 6), 560)
    np.testing.assert_allclose(ours, ref, atol=2e-3, rtol=1e-4)


@settings(max_examples=40, deadline=None)
@given(
    seconds=st.floats(0.0, 1.5),
    chunks=st.lists(st.integers(1, 5000), min_size=1, max_size=30),
    with_cmvn=st.booleans(),
)
def test_streaming_equals_offline(seconds, chunks, with_cmvn):
    x = speechlike(seconds, 16000, seed=int(seconds * 1000))
    cmvn = Cmvn(np.full(560, -10, np.float32), np.full(560, 0.2, np.float32)) if with_cmvn else None
    frontend = ParaformerFrontend(cmvn)
    stream = frontend.stream()
    pieces = stream_in_chunks(stream, x, chunks)
    streamed = np.concatenate(pieces)
    np.testing.assert_array_equal(streamed, frontend(x))
    # The stream resets after flush and serves the next utterance.
    assert np.array_equal(np.concatenate([stream.step(x), stream.flush()]), frontend(x))
