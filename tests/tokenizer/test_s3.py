import numpy as np
import pytest
import torch

from conftest import LIBRIVOX, speechlike, stream_in_chunks
from official_reference import official_vq06, onnx_session, write_official_dir
from stepaudio.audio import load_audio
from stepaudio.errors import AudioError, CheckpointError, ModelNotFound
from stepaudio.tokenizer.s3 import AcousticTokenizer, load_s3_encoder

pytest.importorskip("onnxruntime")
pytest.importorskip("whisper")


@pytest.fixture(scope="module", params=[13, 17], ids=["opset13-decomposed-layernorm", "opset17-layernorm-op"])
def official_dir(request, tmp_path_factory):
    return write_official_dir(tmp_path_factory.mktemp("models"), s3_opset=request.param)


@pytest.fixture(scope="module")
def tokenizer(official_dir):
    return AcousticTokenizer.from_pretrained(official_dir.root)


def test_reads_every_weight_out_of_the_graph(tokenizer, official_dir):
    ours, graph = tokenizer.encoder, official_dir.s3_graph
    config = ours.config
    assert (config.n_mels, config.d_model, config.n_layers, config.codebook_size) == (128, 40, 2, 4096)
    assert config.n_heads == 20 and config.conv1_stride == 2 and tokenizer.token_rate == 25
    pairs = {
        "conv1.weight": graph.encoders.conv1.weight,
        "conv2.bias": graph.encoders.conv2.bias,
        "positional_embedding": graph.encoders.positional_embedding,
        "blocks.1.attn.query.weight": graph.blocks[1].attn.query.weight,
        "blocks.0.attn.key.weight": graph.blocks[0].attn.key.weight,
        "blocks.1.attn_ln.weight": graph.blocks[1].attn_ln.weight,
        "blocks.0.mlp_ln.bias": graph.blocks[0].mlp_ln.bias,
        "blocks.1.mlp.2.weight": graph.blocks[1].mlp[2].weight,
        "codebook": graph.quantizer.rq.model.layers[0]._codebook.embed,
    }
    state = ours.state_dict()
    for name, expected in pairs.items():
        torch.testing.assert_close(state[name], expected.detach(), rtol=0, atol=0, msg=name)


@pytest.mark.parametrize("seconds", [0.03, 0.5, 3.3, 12.0, 30.0, 30.02, 31.0])
def test_tokens_equal_onnxruntime(tokenizer, official_dir, seconds):
    x = speechlike(seconds, 16000, seed=int(seconds * 100))
    ours = tokenizer.encode(x)
    assert np.array_equal(ours, official_vq06(onnx_session(official_dir.folder / "speech_tokenizer_v1.onnx"), x))
    assert len(ours) == sum(
        (-(-(n // 160) // 4)) for n in (len(x[i : i + 480_000]) for i in range(0, len(x), 480_000)) if n >= 480
    )


def real_speech(seconds: float) -> np.ndarray:
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        pytest.skip("LibriVox test clips not installed: apt-get install pocketsphinx-testdata")
    return np.resize(np.concatenate([load_audio(clip, 16000)[0] for clip in clips]), int(seconds * 16000))


def test_tokens_equal_onnxruntime_on_real_speech(tokenizer, official_dir):
    x = real_speech(7.0)
    assert np.array_equal(
        tokenizer.encode(x), official_vq06(onnx_session(official_dir.folder / "speech_tokenizer_v1.onnx"), x)
    )


def test_token_rate_on_real_speech(tokenizer):
    for seconds in (0.5, 1.0, 3.7, 12.0, 29.9, 45.0, 60.0):
        tokens = tokenizer.encode(real_speech(seconds))
        assert abs(len(tokens) - 25 * seconds) <= 2, (seconds, len(tokens))
        assert tokens.dtype == np.int64 and ((tokens >= 0) & (tokens < 4096)).all()


def test_bad_audio_gets_the_front_end_errors(tokenizer):
    with pytest.raises(AudioError, match="empty"):
        tokenizer.encode(np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="NaN"):
        tokenizer.encode(np.full(1600, np.inf, np.float32))
    with pytest.raises(AudioError, match="sample rate"):
        tokenizer.encode(np.zeros(1600, np.float32), 10)


def test_broken_files_say_what_is_wrong(official_dir, tmp_path):
    with pytest.raises(ModelNotFound):
        load_s3_encoder(tmp_path / "speech_tokenizer_v1.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01 not protobuf at all")
    with pytest.raises(CheckpointError, match="junk.onnx"):
        load_s3_encoder(tmp_path / "junk.onnx")
    with pytest.raises(CheckpointError, match="heads"):
        load_s3_encoder(official_dir.folder / "speech_tokenizer_v1.onnx", n_heads=7)
    import onnx

    graph = onnx.load(str(official_dir.folder / "speech_tokenizer_v1.onnx"))
    for node in graph.graph.node:
        if node.name == "/blocks.1/attn/out/MatMul":
            node.name = "/blocks.1/attn/output/MatMul"
    onnx.save(graph, str(tmp_path / "renamed.onnx"))
    with pytest.raises(CheckpointError, match=r"missing: blocks.1.attn.out.weight; unexpected: blocks.1.attn.output.w"):
        load_s3_encoder(tmp_path / "renamed.onnx")


@pytest.mark.parametrize("chunks", [[3840], [16000, 7], [480_000]])
def test_stream_gives_the_offline_codes_piece_by_piece(tokenizer, chunks):
    x = speechlike(65.0, 16000, seed=4)
    pieces = stream_in_chunks(tokenizer.stream(), x, chunks)
    assert np.array_equal(np.concatenate(pieces), tokenizer.encode(x))
    assert sum(len(piece) for piece in pieces[:-1]) == 2 * 750  # two whole 30-s pieces before the end
