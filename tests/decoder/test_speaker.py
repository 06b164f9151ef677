import numpy as np
import pytest
import torch

from conftest import speechlike
from decoder.tiny import write_campplus
from stepaudio.audio import kaldi_fbank, load_audio
from stepaudio.decoder.speaker import GE2E, CAMPPlus
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.models.store import resolve_model


@pytest.fixture(scope="module")
def ge2e() -> GE2E:
    try:
        return GE2E.from_resemblyzer(resolve_model("mini").require("speaker"))
    except Exception as error:
        pytest.skip(f"resemblyzer not installed: {error}")


def test_ge2e_equals_resemblyzer(ge2e, speech_path):
    resemblyzer = pytest.importorskip("resemblyzer")
    samples, _ = load_audio(speech_path, 16_000)
    quiet = samples * 0.05
    reference = resemblyzer.VoiceEncoder("cpu", verbose=False)
    expected = reference.embed_utterance(resemblyzer.audio.normalize_volume(quiet, -30, increase_only=True))
    ours = ge2e(quiet).numpy()
    assert ours.shape == (256,)
    np.testing.assert_allclose(ours, expected, atol=2e-4)


def test_ge2e_separates_voices(ge2e, speech_path):
    samples, _ = load_audio(speech_path, 16_000)
    half = len(samples) // 2
    same = float(ge2e(samples[:half]) @ ge2e(samples[half:]))
    other = float(ge2e(samples[:half]) @ ge2e(speechlike(3.0, 16_000)))
    assert same > 0.7 and other < same - 0.1


def test_ge2e_rejects_bad_audio(ge2e):
    with pytest.raises(AudioError):
        ge2e(np.zeros(10, dtype=np.float32))
    with pytest.raises(AudioError):
        ge2e(np.full(16_000, np.nan, dtype=np.float32))


def test_campplus_runs_the_official_front_end(tmp_path):
    weights = np.random.default_rng(0).standard_normal((80, 192)).astype(np.float32)
    write_campplus(tmp_path / "campplus.onnx", weights)
    model = CAMPPlus(tmp_path / "campplus.onnx")
    samples = speechlike(1.5, 16_000)
    feats = kaldi_fbank(samples, 80, window="povey")
    feats = feats - feats.mean(axis=0)  # per-utterance mean subtraction
    np.testing.assert_allclose(model.features(samples), feats, atol=1e-5)
    np.testing.assert_allclose(model(samples).numpy(), feats.max(axis=0) @ weights, rtol=1e-4, atol=1e-4)
    # the mean subtraction makes the embedding blind to the input level
    np.testing.assert_allclose(model(samples * 4).numpy(), model(samples).numpy(), rtol=1e-3, atol=1e-3)


def test_campplus_rejects_a_corrupt_file(tmp_path):
    (tmp_path / "campplus.onnx").write_bytes(b"garbage")
    with pytest.raises(CheckpointError):
        CAMPPlus(tmp_path / "campplus.onnx")


def test_embeddings_are_float32_vectors(ge2e):
    assert ge2e(speechlike(2.0, 16_000)).dtype == torch.float32
