"""Streaming decode: chunks in, chunks out, equal to offline up to the right context a chunk lacks."""

import numpy as np
import pytest
import torch
from tiny import tiny_flow, tiny_hift

from stepaudio.decoder.speech_decoder import SpeechDecoder, StreamSchedule
from stepaudio.errors import OptionError, TokenError

SCHEDULE = StreamSchedule(first_chunk_tokens=20, growth=2.0, max_chunk_tokens=60, context_tokens=120)


@pytest.fixture
def flow():
    return tiny_flow()


@pytest.fixture
def hift():
    return tiny_hift()


@pytest.fixture
def decoder(flow, hift) -> SpeechDecoder:
    return SpeechDecoder(flow, hift, seed=7)


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 5120, (160,), generator=torch.Generator().manual_seed(0))


def streamed(decoder, tokens, step=7, speed=1.0):
    stream = decoder.stream(schedule=SCHEDULE, speed=speed)
    pieces = [stream.step(tokens[i : i + step]) for i in range(0, len(tokens), step)]
    return pieces + [stream.flush()]


def test_offline_decode_shape_and_reproducibility(decoder, tokens):
    pcm, rate = decoder.decode(tokens)
    assert rate == 22050 and pcm.dtype == np.float32
    assert len(pcm) == decoder.flow.config.mel_frames(len(tokens)) * 256  # 256 samples per mel frame
    again, _ = decoder.decode(tokens)
    assert np.array_equal(pcm, again)


@pytest.mark.parametrize("speed", [0.8, 1.25])
def test_speed_stretches_the_tokens_and_streams_like_offline(decoder, tokens, speed):
    pcm, _ = decoder.decode(tokens, speed=speed)
    frames = decoder.flow.config.mel_frames(len(tokens), speed)
    assert len(pcm) == frames * 256 and abs(frames - decoder.flow.config.mel_frames(len(tokens)) / speed) <= 1
    online = np.concatenate(streamed(decoder, tokens, speed=speed))
    assert len(online) == len(pcm)
    assert np.sqrt(np.mean((online - pcm) ** 2)) < 0.01 * np.sqrt(np.mean(pcm**2))


@pytest.mark.parametrize("speed", [0.2, 3.0])
def test_a_speed_out_of_range_is_refused(decoder, speed):
    with pytest.raises(OptionError, match="speed must be between 0.5 and 2.0"):
        decoder.stream(speed=speed)


def test_one_chunk_stream_is_the_offline_output(decoder, tokens):
    stream = decoder.stream(schedule=SCHEDULE)
    stream.add(tokens)
    assert np.array_equal(stream.flush(), decoder.decode(tokens)[0])


def test_chunked_stream_matches_offline_without_clicks(decoder, tokens):
    offline, _ = decoder.decode(tokens)
    pieces = streamed(decoder, tokens)
    sizes = [len(p) for p in pieces]
    online = np.concatenate(pieces)
    # Nothing before the first 20 tokens, then chunks of 20, 40, 60, 60 tokens: growing outputs.
    assert sizes[:2] == [0, 0] and sizes[2] > 0
    emitted = [s for s in sizes[:-1] if s]
    assert len(emitted) >= 3 and emitted[1] > emitted[0]
    assert len(online) == len(offline)
    # Stated tolerance: the stream differs from offline by less than 1% RMS of the signal.
    assert np.sqrt(np.mean((online - offline) ** 2)) < 0.01 * np.sqrt(np.mean(offline**2))
    # No clicks: around every join the sample-to-sample step is no larger than offline's largest step.
    joins = np.cumsum(sizes)[:-1]
    joins = joins[(joins > 2) & (joins < len(online) - 2)]
    largest_step = np.abs(np.diff(offline)).max()
    for j in joins:
        assert np.abs(np.diff(online[j - 2 : j + 3])).max() <= 1.05 * largest_step


def test_stream_misuse_raises(decoder, tokens):
    stream = decoder.stream(schedule=SCHEDULE)
    with pytest.raises(TokenError):
        stream.flush()  # nothing to decode
    with pytest.raises(TokenError, match="0..5119"):
        stream.step(torch.tensor([9999]))
    stream.add(tokens[:10])
    stream.flush()
    with pytest.raises(TokenError, match="flushed"):
        stream.step(tokens[:5])


def test_voice_prompt_conditions_the_decode(flow, hift, tokens):
    speaker = lambda samples: torch.tensor(np.resize(samples[:16] * 100, 16), dtype=torch.float32)  # noqa: E731
    decoder = SpeechDecoder(flow, hift, speaker=speaker, seed=7)
    rng = np.random.default_rng(0)
    voice = decoder.voice(rng.standard_normal(16_000).astype(np.float32) * 0.1, 16_000, tokens[:40])
    # 1 s of audio, 40 tokens (0.96 s): the prompt mel is cut to the frames its tokens cover
    assert voice.mel.shape == (80, flow.config.mel_frames(40)) == (80, 82) and voice.embedding.shape == (16,)
    prompted, _ = decoder.decode(tokens[:50], voice)
    plain, _ = decoder.decode(tokens[:50])
    assert len(prompted) == len(plain) and not np.allclose(prompted, plain)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_a_decoder_on_a_gpu_sounds_as_on_the_cpu(decoder, tokens):
    voice = decoder.voice(np.sin(np.arange(16_000) / 10).astype(np.float32), 16_000, tokens[:40], torch.ones(16))
    expected = [decoder.decode(tokens, voice)[0], np.concatenate(streamed(decoder, tokens))]
    decoder.to("cuda")
    assert decoder.device.type == "cuda"
    got = [decoder.decode(tokens, voice)[0], np.concatenate(streamed(decoder, tokens))]
    for pcm, reference in zip(got, expected, strict=True):
        assert pcm.dtype == np.float32 and len(pcm) == len(reference)
        rms = np.sqrt(np.mean(reference**2))
        assert np.sqrt(np.mean((pcm - reference) ** 2)) < 0.02 * rms  # cuDNN may convolve in TF32
