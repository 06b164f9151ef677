"""The mini dual tokenizer end to end on real speech, with random codebooks (rates and layout do not
depend on what the codebooks learned)."""

import numpy as np
import pytest
import torch

from conftest import LIBRIVOX, stream_in_chunks
from stepaudio.asr.transcribe import Transcriber
from stepaudio.audio import load_audio, peak_normalize, resample
from stepaudio.errors import AudioError
from stepaudio.tokenizer.acoustic_mini import AcousticMiniConfig, AcousticMiniTokenizer
from stepaudio.tokenizer.dual import DualTokenizer
from stepaudio.tokenizer.interleave import split
from stepaudio.tokenizer.semantic_mini import SemanticMiniTokenizer


@pytest.fixture(scope="module")
def tokenizer() -> DualTokenizer:
    g = torch.Generator().manual_seed(0)
    transcriber = Transcriber.load("mini")
    config = AcousticMiniConfig()
    acoustic = AcousticMiniTokenizer(
        config, torch.randn(4096, config.dim, generator=g), torch.full((config.dim,), -3.0), torch.ones(config.dim)
    )
    projection = (torch.randn(32, 384, generator=g), torch.zeros(32))
    centroids = torch.nn.functional.normalize(torch.randn(1024, 32, generator=g), dim=1)
    return DualTokenizer(SemanticMiniTokenizer(transcriber, centroids, projection), acoustic)


@pytest.mark.parametrize("seconds", [0.5, 3.0, 60.0])
def test_rates_and_layout_on_real_speech(tokenizer, speech_path, seconds):
    speech, rate = load_audio(speech_path)
    samples = np.resize(speech, int(seconds * rate))
    tokens = tokenizer.encode(samples, rate)
    assert abs(len(tokens.semantic) - seconds * 50 / 3) <= 1
    assert abs(len(tokens.acoustic) - seconds * 25) <= 2
    assert len(tokens.interleaved) == 5 * min(len(tokens.semantic) // 2, len(tokens.acoustic) // 3)
    assert tokens.interleaved.min() >= 0 and tokens.interleaved.max() < 5120
    assert tokens.llm_ids().min() >= 65536


def test_other_rates_and_stereo_are_accepted(tokenizer, speech_path):
    speech, rate = load_audio(speech_path)
    at_16k = tokenizer.encode(speech, rate)
    stereo_44k = np.stack([speech, speech], axis=1)

    tokens = tokenizer.encode(resample(stereo_44k, rate, 44100), 44100)
    assert abs(len(tokens.semantic) - len(at_16k.semantic)) <= 1


def test_stream_encoders_are_the_two_halves_of_encode(tokenizer, speech_path):
    speech, rate = load_audio(speech_path)
    stereo_44k = resample(np.stack([speech, 0.5 * speech], axis=1), rate, 44100)
    semantic, acoustic = tokenizer.stream_encoders()
    tokens = tokenizer.encode(stereo_44k, 44100)
    assert np.array_equal(semantic(stereo_44k, 44100), tokens.semantic)
    assert np.array_equal(acoustic(stereo_44k, 44100), tokens.acoustic)


def test_prompt_mode_trims_silence(tokenizer, speech_path):
    speech, rate = load_audio(speech_path)
    padded = np.concatenate([np.zeros(rate * 2, np.float32), speech, np.zeros(rate * 2, np.float32)])
    assert len(tokenizer.encode(padded, rate, prompt=True).semantic) < len(tokenizer.encode(padded, rate).semantic)


def test_bad_audio_gets_the_front_end_errors(tokenizer):
    with pytest.raises(AudioError, match="empty"):
        tokenizer.encode(np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.encode(np.full(16000, np.nan, np.float32), 16000)


@pytest.fixture(scope="module")
def mini() -> DualTokenizer:
    """The real mini tokenizer, with the codebooks committed in src/stepaudio/assets/mini."""
    return DualTokenizer.load("mini")


def test_mini_codebooks_tokenize_real_speech_at_the_right_rates(mini):
    for clip in sorted(LIBRIVOX.glob("*.wav")):
        samples, rate = load_audio(clip)
        tokens = mini.encode(samples, rate)
        seconds = len(samples) / rate
        assert abs(len(tokens.semantic) - seconds * 50 / 3) <= 1 and abs(len(tokens.acoustic) - seconds * 25) <= 2
        assert len(set(tokens.semantic.tolist())) > len(tokens.semantic) / 4  # real variety, not a few codes


def test_streams_give_the_offline_groups_up_to_a_bounded_difference(mini, speech_path):
    tokenizer = mini
    speech, rate = load_audio(speech_path)
    samples = peak_normalize(np.resize(speech, rate * 8))
    offline = tokenizer.encode(samples, rate).interleaved
    stream = tokenizer.stream()
    pieces = stream_in_chunks(stream, samples, [3840])  # 240 ms chunks
    streamed = np.concatenate(pieces)
    assert len(streamed) == len(offline)
    assert sum(len(piece) for piece in pieces[:-1]) > len(offline) / 2  # most groups came before the end
    # Acoustic codes are exact; semantic ones emitted before the utterance ended may differ a little
    # (4-8 % on the LibriVox clips with 240 ms chunks).
    streamed_semantic, streamed_acoustic = split(streamed)
    offline_semantic, offline_acoustic = split(offline)
    assert np.array_equal(streamed_acoustic, offline_acoustic)
    assert np.mean(streamed_semantic != offline_semantic) < 0.15
