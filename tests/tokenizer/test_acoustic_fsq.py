import json

import numpy as np
import pytest
import torch

from conftest import speechlike, stream_in_chunks
from stepaudio.audio import load_audio, log10_mel
from stepaudio.errors import CheckpointError, ModelNotFound
from stepaudio.tokenizer.acoustic_fsq import (
    FSQ,
    AcousticFSQConfig,
    AcousticFSQTokenizer,
    FSQEncoder,
    code_vectors,
    load_acoustic_mini,
)
from stepaudio.tokenizer.acoustic_mini import AcousticMiniConfig, AcousticMiniTokenizer, stack_frames


@pytest.fixture(scope="module")
def tokenizer() -> AcousticFSQTokenizer:
    """A small untrained encoder (its weights scaled up so that codes vary) with real slice statistics."""
    torch.manual_seed(0)
    config = AcousticFSQConfig(channels=32, blocks=3)
    encoder = FSQEncoder(config)
    with torch.no_grad():
        encoder.output.weight.mul_(20)
    slices = torch.cat([stack_frames(log10_mel(speechlike(2.0, 16000, seed=s)), 4) for s in range(3)])
    return AcousticFSQTokenizer(config, encoder.eval(), slices.mean(dim=0), slices.std(dim=0) + 1e-3)


def test_fsq_has_4096_codes_and_their_values_round_trip():
    fsq = FSQ((8, 8, 8, 8))
    codes = torch.arange(4096)
    values = fsq.values(codes)
    assert values.min() == -1 and values.max() == 0.75  # 8 levels: -4..3 over 4
    half_range = 3.5 * (1 - 1e-3)  # tanh's reach: the outer levels are reached by rounding
    shift = torch.atanh(torch.tensor(0.5 / half_range))
    z = torch.atanh(((values * 4 + 0.5) / half_range).clamp(-0.999, 0.999)) - shift
    quantised, again = fsq(z)  # a latent that lands at each grid point gives its code back
    assert torch.equal(again, codes) and torch.allclose(quantised, values)


def test_fsq_passes_gradients_straight_through():
    z = torch.randn(5, 4, requires_grad=True)
    FSQ((8, 8, 8, 8))(z)[0].sum().backward()
    assert (z.grad.abs() > 0).all()


@pytest.mark.parametrize("seconds", [0.5, 1.0, 7.3])
def test_rate_is_25_hz(tokenizer, seconds):
    codes = tokenizer.encode(speechlike(seconds, 16000))
    assert len(codes) == int(seconds * 16000) // 640
    assert codes.dtype == np.int64 and 0 <= codes.min() and codes.max() < 4096
    assert len(np.unique(codes)) > 5


def test_streaming_gives_the_offline_codes(tokenizer, speech_path):
    samples, _ = load_audio(speech_path)
    offline = tokenizer.encode(samples)
    for chunks in ([160], [1000, 37, 4000], [16000], [len(samples)]):
        streamed = np.concatenate(stream_in_chunks(tokenizer.stream(), samples, chunks))
        # the same window of slices around every code: only a float tie at a rounding edge could differ
        assert len(streamed) == len(offline) and (streamed != offline).mean() < 0.01


def test_a_code_waits_for_its_right_context(tokenizer):
    stream = tokenizer.stream()
    first = stream.step(speechlike(1.0, 16000))  # 25 slices, the last ones not all out of the mel stream yet
    rest = stream.flush()
    assert len(first) + len(rest) == 25 and len(rest) >= tokenizer.config.context  # the last `context` wait


def test_save_and_load_by_its_config(tokenizer, tmp_path):
    path = tmp_path / "acoustic_codebook.safetensors"
    tokenizer.save(path)
    assert json.loads(path.with_suffix(".json").read_text())["quantizer"] == "fsq"
    loaded = load_acoustic_mini(path)
    x = speechlike(1.0, 16000, seed=9)
    assert isinstance(loaded, AcousticFSQTokenizer) and np.array_equal(loaded.encode(x), tokenizer.encode(x))
    assert code_vectors(path).shape == (4096, 4)
    with pytest.raises(ModelNotFound):
        AcousticFSQTokenizer.load(tmp_path / "missing.safetensors")
    path.with_suffix(".json").write_text(json.dumps({"quantizer": "fsq", "blocks": 2, "channels": 32}))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_acoustic_mini(path)


def test_a_kmeans_codebook_still_loads_as_one(tmp_path):
    config = AcousticMiniConfig(codebook_size=8)
    kmeans = AcousticMiniTokenizer(config, torch.randn(8, config.dim), torch.zeros(config.dim), torch.ones(config.dim))
    kmeans.save(tmp_path / "acoustic.safetensors")
    assert isinstance(load_acoustic_mini(tmp_path / "acoustic.safetensors"), AcousticMiniTokenizer)
    assert torch.equal(code_vectors(tmp_path / "acoustic.safetensors"), kmeans.centroids)
