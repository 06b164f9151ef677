"""Tiny TTS stacks for the tests: a random Step1 LM with a compact vocabulary, a tiny decoder, a
stand-in speaker encoder and prompt tokenizer, and one built-in voice."""

import json
from pathlib import Path

import numpy as np
import torch

from conftest import speechlike
from decoder.tiny import TINY_FLOW, tiny_flow, tiny_hift, write_campplus
from stepaudio.audio import save_audio
from stepaudio.decoder.speech_decoder import SpeechDecoder
from stepaudio.lm.model import Transformer
from stepaudio.tokenizer.interleave import AudioTokens
from stepaudio.train.tts_recipe import export_tts, mini_config
from stepaudio.train.tts_vocab import train_vocabulary
from stepaudio.tts.pipeline import TTS
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.voices import VoiceRegistry

TEXTS = [
    "hello there, how are you today?",
    "the quick brown fox jumps over the lazy dog.",
    "one two three four five six seven eight nine ten.",
    "你好，今天天气很好。",
    "我们明天去图书馆看书。",
] * 5
TEXT_VOCAB = 600


def tiny_speech_lm(directory: Path, seed: int = 0) -> SpeechLM:
    """A random mini-layout TTS LM, exported and loaded back as `stepaudio train tts` leaves it."""
    tokenizer_file = train_vocabulary(TEXTS, directory / "run" / "tokenizer.model", TEXT_VOCAB)
    torch.manual_seed(seed)
    model = Transformer(
        mini_config(
            TEXT_VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            num_heads=4,
            num_kv_heads=2,
            max_seq_len=1024,
        )
    )
    export_tts(model, tokenizer_file, TEXT_VOCAB, directory / "tts")
    return SpeechLM.from_mini(directory / "tts")


class FakeSpeaker:
    """A speaker encoder stand-in: a fixed-size summary of the waveform's level and spectrum."""

    def __call__(self, samples: np.ndarray) -> torch.Tensor:
        spectrum = np.abs(np.fft.rfft(samples[:4096], 4096))[: TINY_FLOW.spk_embed_dim * 16]
        bands = spectrum.reshape(TINY_FLOW.spk_embed_dim, 16).mean(axis=1)
        return torch.from_numpy(bands / (np.linalg.norm(bands) + 1e-9)).float()


class FakePromptTokenizer:
    """Prompt audio -> tokens: 5 per 120 ms, derived from the samples (so prompts differ)."""

    def __init__(self):
        self.calls = []

    def encode(self, samples: np.ndarray, sample_rate: int, *, prompt: bool = False) -> AudioTokens:
        self.calls.append((samples, sample_rate, prompt))
        groups = max(1, int(len(samples) / sample_rate / 0.12))
        semantic = (np.arange(2 * groups) * 7 + len(samples)) % 1024
        acoustic = (np.arange(3 * groups) * 11 + len(samples)) % 4096
        return AudioTokens(semantic, acoustic)


def tiny_decoder() -> SpeechDecoder:
    return SpeechDecoder(tiny_flow(), tiny_hift(), FakeSpeaker())


def builtin_voice_dir(directory: Path, name: str = "anna", transcript: str = "This is my voice.") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    save_audio(directory / f"{name}.wav", speechlike(1.5, 16_000, seed=3), 16_000)
    (directory / f"{name}.json").write_text(json.dumps({"transcript": transcript}))
    return directory


def tiny_tts(tmp_path: Path, lm: SpeechLM | None = None) -> TTS:
    voices = VoiceRegistry.load(builtin_voice_dir(tmp_path / "builtin"), tmp_path / "user")
    tokenizer = FakePromptTokenizer()
    tts = TTS(lm or tiny_speech_lm(tmp_path), tiny_decoder(), voices, "mini", "anna", lambda: tokenizer)
    tts.fake_tokenizer = tokenizer
    return tts


SPEAKER_DIM = 12  # the tiny CosyVoice yaml's spk_embed_dim


def write_official_tts(root: Path) -> Path:
    """A tiny Step-Audio-TTS-3B in the published layout under root: Step1 LM, both CosyVoice folders with
    CAMPPlus, and `speakers/` with Tingting and TingtingRAP."""
    from decoder.test_official import official_flow_shapes, official_hift_shapes, write_folder
    from lm.lm_fixtures import write_step1_checkpoint

    tts = root / "Step-Audio-TTS-3B"
    tts.mkdir(parents=True)
    write_step1_checkpoint(tts)
    speaker = np.random.default_rng(0).standard_normal((80, SPEAKER_DIM)).astype(np.float32) * 0.1
    for name in ("CosyVoice-300M-25Hz", "CosyVoice-300M-25Hz-Music"):
        folder = write_folder(tts / name, official_flow_shapes(), official_hift_shapes())
        write_campplus(folder / "campplus.onnx", speaker)
    speakers = tts / "speakers"
    transcripts = {"Tingting": "你好，我是婷婷。", "TingtingRAP": "我是说唱的婷婷。"}
    for name, transcript in transcripts.items():
        builtin_voice_dir(speakers, name, transcript)
        (speakers / f"{name}.wav").rename(speakers / f"{name}_prompt.wav")
        (speakers / f"{name}.json").unlink()
    (speakers / "speakers_info.json").write_text(json.dumps(transcripts, ensure_ascii=False))
    return tts


def short_official_speech(monkeypatch, tokens: int = 40) -> list:
    """A random Step1 LM never ends its turn (the release's call would run to its positions): every LM call
    stops after `tokens` tokens, as at an end of turn. Returns the (tokenizer, prompt ids) of each call."""
    import itertools

    calls, generate = [], SpeechLM.generate

    def stopping(self, prompt, *args, **kwargs):
        calls.append((self.tokenizer, prompt))
        yield from itertools.islice(generate(self, prompt, *args, **kwargs), tokens)

    monkeypatch.setattr(SpeechLM, "generate", stopping)
    return calls
