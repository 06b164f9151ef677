"""The official TTS call's goldens (tests/reference/goldens/tts_e2e_*.safetensors) as a model folder our
pipeline loads: a tiny Step-Audio-TTS-3B with the golden's Step1 LM, both CosyVoice folders (its flow, HiFT
and campplus.onnx) and `speakers/` holding its TinySpeaker, plus what the official call drew at random, to
hand our decoder the same numbers. Shared by tests/decoder, tests/tts and bench/tts_official.py."""

from __future__ import annotations

import json
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from stepaudio.audio import save_audio
from stepaudio.decoder import speech_decoder
from stepaudio.tokenizer.interleave import AudioTokens, split

GOLDENS = Path(__file__).resolve().parent / "reference" / "goldens"


@cache
def golden(name: str) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(str(GOLDENS / f"{name}.safetensors"), "pt") as f:
        return {key: f.get_tensor(key) for key in f.keys()}, json.loads(f.metadata()["meta"])


def golden_state(spec: list, seed: int, sha256: str) -> dict[str, torch.Tensor]:
    from reference.golden_weights import digest, make_state, to_torch

    values = make_state(seed, spec)
    assert digest(values) == sha256, "golden_weights.py no longer makes the weights the goldens were made from"
    return to_torch(values)


def write_golden_tts(root: Path, tag: str = "fp32") -> Path:
    """root/Step-Audio-TTS-3B as the official call of golden `tts_e2e_<tag>` had it; returns root."""
    tensors, meta = golden(f"tts_e2e_{tag}")
    prompt, _ = golden("tts_prompt")
    folder = root / "Step-Audio-TTS-3B"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(meta["step1_config"]))
    save_file(
        golden_state(meta["step1_spec"], meta["step1_seed"], meta["step1_sha256"]), str(folder / "model.safetensors")
    )
    (folder / "tokenizer.model").write_bytes(prompt["tokenizer_model"].numpy().tobytes())
    for name, seeds in meta["cosyvoice"].items():
        cosy = folder / name
        cosy.mkdir()
        (cosy / "cosyvoice.yaml").write_text(meta["yaml"])
        torch.save(golden_state(meta["flow_spec"], seeds["flow_seed"], seeds["flow_sha256"]), cosy / "flow.pt")
        torch.save(golden_state(meta["hift_spec"], seeds["hift_seed"], seeds["hift_sha256"]), cosy / "hift.pt")
        (cosy / "campplus.onnx").write_bytes(tensors["campplus_onnx"].numpy().tobytes())
    speakers = folder / "speakers"
    speakers.mkdir()
    (speakers / "speakers_info.json").write_text(json.dumps(meta["speakers"], ensure_ascii=False))
    save_audio(speakers / f"{meta['speaker']}_prompt.wav", tensors["speaker_wav"].numpy(), 16_000)
    return root


class GoldenPromptTokenizer:
    """The official goldens' stand-in for the Step-Audio tokenizer (a fixed code pattern): gives the golden's
    prompt codes for the speaker's prompt, and records what audio it was given."""

    def __init__(self, tag: str = "fp32"):
        tensors, _ = golden(f"tts_e2e_{tag}")
        self.codes = (tensors["prompt_code"] - 65536).numpy()
        self.calls = []

    def encode(self, samples: np.ndarray, sample_rate: int, *, prompt: bool = False) -> AudioTokens:
        self.calls.append((np.asarray(samples), sample_rate, prompt))
        return AudioTokens(*split(self.codes))


@contextmanager
def official_draws(tag: str = "fp32"):
    """Every decoder stream started inside draws the official call's recorded numbers: the flow's noise
    (prompt frames, then the target's), HiFT's source phases and noise."""
    tensors, _ = golden(f"tts_e2e_{tag}")
    noise, prompt_frames = tensors["flow_noise"], tensors["speech_feat"].shape[0]
    original = speech_decoder.DecoderStream.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        assert self.voice.mel.shape[1] == prompt_frames, "not the golden's prompt mel"
        self.prompt_noise = noise[:, :prompt_frames].to(self.device)
        self.target_noise = lambda start, end: noise[:, prompt_frames + start : prompt_frames + end]
        self.source_noise = lambda start, end: tensors["hift_noise"][:, start:end]
        self.phases = tensors["hift_phase"].to(self.device)

    speech_decoder.DecoderStream.__init__ = init
    try:
        yield tensors
    finally:
        speech_decoder.DecoderStream.__init__ = original
