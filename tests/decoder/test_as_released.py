"""The official speech decoder as released (#33 point 3), against the goldens of tests/reference: the flow in
bfloat16 as the release runs it on a GPU (cosyvoice.py:44), and a voice conditioned as the release's
`preprocess_prompt_wav` does (tts.py:201-217 at stepfun-ai/Step-Audio a52b94d8)."""

import numpy as np
import pytest
import torch

from decoder.tiny import tiny_flow, tiny_hift
from golden_tts import golden, golden_state
from stepaudio.decoder.flow import FlowModel
from stepaudio.decoder.official import flow_config, read_hyperpyyaml
from stepaudio.decoder.speaker import CAMPPlus
from stepaudio.decoder.speech_decoder import SpeechDecoder

LOG_ABS = 1e-4  # log-mel units, as tests/reference/test_goldens.py
CAMPPLUS = 5e-5  # relative: kaldi-native-fbank's float32 FFT against torchaudio's


def relative(ours, official) -> float:
    ours, official = torch.as_tensor(ours).double(), torch.as_tensor(official).double()
    assert ours.shape == official.shape, f"shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    return float((ours - official).abs().max() / official.abs().max())


@pytest.mark.parametrize("case", ["prompt", "no_prompt"])
def test_flow_in_bfloat16_against_the_released_flow(case, tmp_path):
    """The flow golden's bf16 runs (tests/reference/goldens/flow): our flow in bf16 against the release's,
    with and without a voice prompt."""
    tensors, meta = golden("flow")
    (tmp_path / "cosyvoice.yaml").write_text(meta["yaml"])
    flow = FlowModel(flow_config(read_hyperpyyaml(tmp_path / "cosyvoice.yaml"))).eval()
    flow.load_state_dict(golden_state(meta["flow_spec"], meta["flow_seed"], meta["flow_sha256"]))
    flow.to(torch.bfloat16)
    shape = meta["cases"][case]
    mel = flow.generate(
        tensors["tokens"],
        tensors["prompt_tokens"][: shape["prompt_tokens"]],
        tensors["prompt_feat"][0, : shape["prompt_frames"]].T,
        tensors["embedding"][0],
        tensors[f"{case}.bf16.noise"][0],
    )
    released = tensors[f"{case}.bf16.mel"][0]
    gap = relative(tensors[f"{case}.bf16.mel_fp32_same_noise"][0], released)
    assert mel.dtype == torch.bfloat16 and relative(mel.float(), released) < 2 * gap


def test_prompt_mel_and_embedding_from_a_24khz_wav_equal_the_release(tmp_path):
    """preprocess_prompt_wav on a 24 kHz wav (tests/reference goldens prompt_mel and campplus): the release's
    resampler to 22.05 and 16 kHz, the whole recording."""
    mel_golden, _ = golden("prompt_mel")
    camp, _ = golden("campplus")
    (tmp_path / "campplus.onnx").write_bytes(camp["campplus_onnx"].numpy().tobytes())
    decoder = SpeechDecoder(tiny_flow(), tiny_hift(), CAMPPlus(tmp_path / "campplus.onnx"))
    assert torch.equal(mel_golden["raw"], camp["raw"])
    voice = decoder.voice_as_released(camp["raw"].numpy(), 24_000, np.arange(20) % 1024)
    assert (voice.mel - mel_golden["speech_feat"].T).abs().max() < LOG_ABS
    assert relative(voice.embedding, camp["embedding"]) < CAMPPLUS
    assert voice.tokens.tolist() == (np.arange(20) % 1024).tolist()
