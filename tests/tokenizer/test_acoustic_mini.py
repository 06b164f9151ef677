import numpy as np
import pytest
import torch

from conftest import speechlike, stream_in_chunks
from stepaudio.audio import load_audio, log10_mel
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.tokenizer.acoustic_mini import AcousticMiniConfig, AcousticMiniTokenizer, raw_slices, stack_frames
from stepaudio.train.kmeans import train_kmeans


@pytest.fixture(scope="module")
def tokenizer() -> AcousticMiniTokenizer:
    """A 64-code tokenizer fitted on a few seconds of synthetic speech-like sound."""
    config = AcousticMiniConfig(codebook_size=64)
    slices = torch.cat([stack_frames(log10_mel(speechlike(2.0, 16000, seed=s)), 4) for s in range(3)])
    mean, std = slices.mean(dim=0), slices.std(dim=0) + 1e-3
    centroids = train_kmeans((slices - mean) / std, 64, progress=False)
    return AcousticMiniTokenizer(config, centroids, mean, std)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 7.3, 60.0])
def test_rate_is_25_hz(tokenizer, seconds):
    codes = tokenizer.encode(speechlike(seconds, 16000))
    assert abs(len(codes) - 25 * seconds) <= 2
    assert codes.dtype == np.int64 and 0 <= codes.min() and codes.max() < 64


def test_streaming_gives_the_offline_codes(tokenizer, speech_path):
    samples, _ = load_audio(speech_path)
    offline = tokenizer.encode(samples)
    for chunks in ([160], [1000, 37, 4000], [16000]):
        streamed = np.concatenate(stream_in_chunks(tokenizer.stream(), samples, chunks))
        # The streamed mel equals the offline one to ~1e-6, so a code can only differ on an exact tie.
        assert len(streamed) == len(offline) and (streamed != offline).mean() < 0.01


def test_loudness_survives_in_the_codes(tokenizer):
    loud = speechlike(2.0, 16000, seed=1)
    quiet = loud * 0.05  # the same sound, much quieter: the level is kept, not normalised away
    assert not np.array_equal(tokenizer.encode(loud), tokenizer.encode(quiet))


def test_save_load_roundtrip(tokenizer, tmp_path):
    tokenizer.save(tmp_path / "acoustic.safetensors")
    loaded = AcousticMiniTokenizer.load(tmp_path / "acoustic.safetensors")
    x = speechlike(1.0, 16000, seed=9)
    assert loaded.config == tokenizer.config and np.array_equal(loaded.encode(x), tokenizer.encode(x))
    with pytest.raises(ModelNotFound, match="acoustic codebook not found"):
        AcousticMiniTokenizer.load(tmp_path / "missing.safetensors")


def test_mismatched_shapes_are_refused():
    config = AcousticMiniConfig(codebook_size=8)
    with pytest.raises(CheckpointError, match="do not match"):
        AcousticMiniTokenizer(config, torch.zeros(8, 10), torch.zeros(320), torch.ones(320))


@pytest.fixture(scope="module")
def mean_free() -> AcousticMiniTokenizer:
    """As `tokenizer`, fitted with each utterance's mean log-mel taken away."""
    config = AcousticMiniConfig(codebook_size=64, utterance_mean=True)
    slices = torch.cat([raw_slices(log10_mel(speechlike(2.0, 16000, seed=s)), config) for s in range(3)])
    mean, std = slices.mean(dim=0), slices.std(dim=0) + 1e-3
    return AcousticMiniTokenizer(config, train_kmeans((slices - mean) / std, 64, progress=False), mean, std)


def test_an_utterance_mean_codebook_hears_past_the_level(mean_free, tokenizer):
    loud = speechlike(2.0, 16000, seed=1)
    quiet = loud * 0.05  # a constant in log-mel: taken away with the utterance's mean
    assert (mean_free.encode(loud) == mean_free.encode(quiet)).mean() > 0.95
    assert (tokenizer.encode(loud) == tokenizer.encode(quiet)).mean() < 0.9  # the packaged kind keeps the level


def test_an_utterance_mean_codebook_streams_close_to_offline(mean_free, speech_path):
    samples, _ = load_audio(speech_path)
    offline = mean_free.encode(samples)
    streamed = np.concatenate(stream_in_chunks(mean_free.stream(), samples, [1600]))
    # the stream takes away the mean of the frames so far: its codes may differ, most where that mean is young
    # (a 64-code codebook; finer ones differ more, see the module's docstring)
    assert len(streamed) == len(offline) and (streamed != offline).mean() < 0.3
    late = len(offline) // 2
    assert (streamed[late:] != offline[late:]).mean() < (streamed != offline).mean() + 1e-9


def test_the_utterance_mean_option_survives_save_and_load(mean_free, tmp_path):
    mean_free.save(tmp_path / "acoustic.safetensors")
    loaded = AcousticMiniTokenizer.load(tmp_path / "acoustic.safetensors")
    x = speechlike(1.0, 16000, seed=9)
    assert loaded.config.utterance_mean and np.array_equal(loaded.encode(x), mean_free.encode(x))
