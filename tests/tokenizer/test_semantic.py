import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import LIBRIVOX, speechlike
from official_reference import official_vq02, write_official_dir
from stepaudio.audio import load_audio
from stepaudio.errors import AudioError, CheckpointError, ModelNotFound
from stepaudio.tokenizer.semantic import SemanticTokenizer

pytest.importorskip("funasr")


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory):
    return write_official_dir(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tokenizer(official_dir):
    return SemanticTokenizer.from_pretrained(official_dir.root)


def test_loads_the_official_layout(tokenizer, official_dir):
    assert tokenizer.encoder.config.output_size == 16 and tokenizer.encoder.config.num_blocks == 3
    ours = tokenizer.encoder.state_dict()
    theirs = official_dir.funasr_encoder.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[name], theirs[name]) for name in ours)
    # The folder itself works as well as its parent.
    assert SemanticTokenizer.from_pretrained(official_dir.folder).centroids.shape == (1024, 16)


@pytest.mark.parametrize("samples", [400, 879, 880, 3839, 3840, 4719, 4720, 8559, 8560, 6840])
def test_offline_equals_the_official_path(tokenizer, official_dir, samples):
    x = np.resize(speechlike(2.0, 16000, seed=samples), samples)
    ref_features, ref_tokens = official_vq02(official_dir, [(x, True)])
    features = tokenizer.encode_features(x)
    assert features.shape == ref_features.shape
    torch.testing.assert_close(features, ref_features, atol=1e-4, rtol=1e-4)
    assert np.array_equal(tokenizer.encode(x), ref_tokens)


@pytest.mark.parametrize("samples, tokens", [(879, 0), (880, 1), (4719, 4), (4720, 5), (8559, 8), (8560, 9)])
def test_end_of_utterance_follows_the_vendored_front_end(tokenizer, samples, tokens):
    # Counts from Step-Audio's vendored FunASR WavFrontendOnline fed as its tokenizer feeds it: frames of
    # the last partial 3840-sample stride are kept only when they complete a real 7-frame LFR window.
    # (The offline front end gives ceil(fbank frames / 6): 1, 1, 5, 5, 9, 9.)
    x = np.resize(speechlike(1.0, 16000, seed=9), samples)
    assert len(tokenizer.encode(x)) == tokens


@settings(max_examples=8, deadline=None)
@given(
    seconds=st.floats(0.2, 1.6),
    pieces=st.lists(st.integers(1, 9000), min_size=1, max_size=12),
    final_empty=st.booleans(),
)
def test_streaming_equals_the_official_vq02(tokenizer, official_dir, seconds, pieces, final_empty):
    x = speechlike(seconds, 16000, seed=len(pieces))
    chunks, start = [], 0
    for size in pieces * (1 + len(x) // max(sum(pieces), 1)):
        if start >= len(x):
            break
        chunks.append(x[start : start + size])
        start += size
    calls = [(c, False) for c in chunks] + [(np.zeros(0, np.float32), True)]
    if not final_empty:
        calls = calls[:-2] + [(chunks[-1], True)]
    ref_features, ref_tokens = official_vq02(official_dir, calls)

    stream = tokenizer.stream()
    features = [stream.step_features(c) for c, _ in calls] + [stream.flush_features()]
    torch.testing.assert_close(torch.cat(features), ref_features, atol=1e-4, rtol=1e-4)
    tokens = np.concatenate([stream.step(c) for c, _ in calls] + [stream.flush()])  # the stream reset after flush
    assert np.array_equal(tokens, ref_tokens)
    assert np.array_equal(tokens, tokenizer.encode(x))


def test_token_rate_on_real_speech(tokenizer):
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        pytest.skip("LibriVox test clips not installed: apt-get install pocketsphinx-testdata")
    speech = np.concatenate([load_audio(clip, 16000)[0] for clip in clips])
    for seconds in (0.5, 1.0, 3.7, 12.0, 60.0):
        x = np.resize(speech, int(seconds * 16000))
        tokens = tokenizer.encode(x)
        assert abs(len(tokens) - seconds * 50 / 3) <= 1, (seconds, len(tokens))
        assert tokens.dtype == np.int64 and ((tokens >= 0) & (tokens < 1024)).all()


def test_resamples_and_mixes_down(tokenizer):
    x = speechlike(1.5, 16000, seed=3)
    stereo_48k = np.repeat(np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)[:, None], 2, axis=1)
    tokens = tokenizer.encode(stereo_48k.astype(np.float32), 48000)
    assert abs(len(tokens) - len(tokenizer.encode(x))) <= 1


def test_bad_audio_gets_the_front_end_errors(tokenizer):
    with pytest.raises(AudioError, match="empty"):
        tokenizer.encode(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.encode(np.full(1600, np.nan, np.float32))
    with pytest.raises(AudioError, match="floating point"):
        tokenizer.encode(np.zeros(1600, np.int16))
    with pytest.raises(AudioError, match="sample rate"):
        tokenizer.encode(np.zeros(1600, np.float32), 0)
    with pytest.raises(AudioError, match="1-D"):
        tokenizer.stream().step(np.zeros((1600, 2), np.float32))


def test_broken_checkpoints_say_what_is_wrong(official_dir, tmp_path):
    import shutil

    folder = tmp_path / "Step-Audio-Tokenizer"
    shutil.copytree(official_dir.folder, folder)
    paraformer = folder / official_dir.paraformer.relative_to(official_dir.folder)
    config = (paraformer / "config.yaml").read_text()

    (paraformer / "config.yaml").write_text(config.replace("num_blocks: 3", "num_blocks: 4"))
    with pytest.raises(CheckpointError, match=r"missing: encoders\.2\."):
        SemanticTokenizer.from_pretrained(folder)
    (paraformer / "config.yaml").write_text(config.replace("input_layer: pe_online", "input_layer: conv2d"))
    with pytest.raises(CheckpointError, match="input_layer"):
        SemanticTokenizer.from_pretrained(folder)
    (paraformer / "config.yaml").write_text(config.replace("lfr_m: 7", "lfr_m: 5"))
    with pytest.raises(CheckpointError, match="lfr_m"):
        SemanticTokenizer.from_pretrained(folder)
    (paraformer / "config.yaml").write_text(config)

    np.save(folder / "linguistic_tokenizer.npy", np.zeros((1024, 8), np.float32))
    with pytest.raises(CheckpointError, match=r"expected float \(1024, 16\)"):
        SemanticTokenizer.from_pretrained(folder)
    np.save(folder / "linguistic_tokenizer.npy", official_dir.centroids)

    (paraformer / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model.pt"):
        SemanticTokenizer.from_pretrained(folder)
    (paraformer / "model.pt").unlink()
    with pytest.raises(ModelNotFound, match="model.pt"):
        SemanticTokenizer.from_pretrained(folder)
