"""The official path end to end on a tiny Step-Audio-TTS-3B in the published layout: Step1 LM,
both CosyVoice folders, CAMPPlus, `speakers/`; RAP and humming switch to the music vocoder."""

import numpy as np
import pytest
import torch
from tts_fixtures import FakePromptTokenizer, short_official_speech, write_official_tts

from stepaudio.errors import OptionError
from stepaudio.tokenizer.dual import DualTokenizer
from stepaudio.tts import TTS

# the random tiny LM says mostly text tokens in the release's call, which it notes each time
pytestmark = pytest.mark.filterwarnings("ignore::stepaudio.tts.pipeline.SpeechNote")


@pytest.fixture(scope="module")
def official_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    write_official_tts(root)
    return root


@pytest.fixture
def official_tts(official_root, monkeypatch, tmp_path):
    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "user"))
    tokenizer = FakePromptTokenizer()
    monkeypatch.setattr(DualTokenizer, "load", classmethod(lambda cls, model: tokenizer))
    calls = short_official_speech(monkeypatch)
    tts = TTS.load(official_root)
    return tts, Decoded(calls)


class Decoded(list):
    """The prompts of the LM calls so far, as text."""

    def __init__(self, calls):
        super().__init__()
        self.calls = calls

    def __getitem__(self, index):
        tokenizer, prompt = self.calls[index]
        return tokenizer.decode(prompt)

    def __len__(self):
        return len(self.calls)


def test_official_directory_speaks_in_a_registered_voice(official_tts):
    tts, prompts = official_tts
    assert tts.tokens_tag == "official" and tts.default_voice == "Tingting"
    assert tts.voices.names() == ["Tingting", "TingtingRAP"]
    assert tts.lm.tokenizer.audio_offset == 65536
    pcm, rate = tts.synthesize("你好。", seed=0)
    assert rate == 22050 and len(pcm) > 0 and np.isfinite(pcm).all()
    assert "使用[Tingting]的声音" in prompts[0]  # registered speakers are named, as in the release
    assert "<|BOT|>human\n你好，我是婷婷。<|EOT|><|BOT|>assistant\n<audio_" in prompts[0]


def vocoders_used(tts, monkeypatch) -> list[str]:
    """The names of the decoders ("decoder", "music_decoder") each synthesis goes through, in order."""
    used = []
    for name in ("decoder", "music_decoder"):
        decoder = getattr(tts, name)
        stream = decoder.stream
        monkeypatch.setattr(
            decoder, "stream", lambda voice, speed, _s=stream, _n=name: used.append(_n) or _s(voice, speed=speed)
        )
    return used


def test_rap_uses_the_music_vocoder_and_the_rap_prompt(official_tts, monkeypatch):
    tts, prompts = official_tts
    used = vocoders_used(tts, monkeypatch)
    tts.synthesize("你好。", tags=["RAP"], seed=0)
    tts.synthesize("你好。", tags=["快速1"], seed=0)
    assert used == ["music_decoder", "decoder"]
    assert "用RAP方式" in prompts[0] and "我是说唱的婷婷。" in prompts[0]  # Tingting's RAP prompt
    assert "(RAP)你好。" in prompts[0] and "(快速1)你好。" in prompts[1]


def test_cloning_with_official_weights_does_not_name_a_speaker(official_tts, tmp_path):
    import soundfile as sf

    from conftest import speechlike

    tts, prompts = official_tts
    sf.write(tmp_path / "me.wav", speechlike(1.5, 16_000), 16_000)
    tts.synthesize("Hi.", prompt_wav=tmp_path / "me.wav", prompt_text="My own words.", seed=0)
    assert "使用[" not in prompts[0] and "<|BOT|>human\nMy own words.<|EOT|>" in prompts[0]


def test_the_lm_and_the_decoders_run_on_the_gpu_when_there_is_one(official_tts):
    tts, _ = official_tts
    gpu = torch.cuda.is_available()
    devices = {tts.lm.model.device.type, tts.decoder.device.type, tts.music_decoder.device.type}
    assert devices == {"cuda" if gpu else "cpu"}
    assert tts.lm.model.dtype == (torch.bfloat16 if gpu else torch.float32)  # the 3B LM: bf16 on a GPU
    pcm, _ = tts.synthesize("你好。", seed=0)
    assert np.isfinite(pcm).all()


def _request_turn(tokenizer, ids: list[int]) -> list[int]:
    """The ids of the last human turn (the text to speak) of a TTS prompt."""
    from stepaudio.lm.tokenizer import BOT, EOT

    human = [tokenizer.token_id(BOT), *tokenizer.encode("human\n", bos=True)]
    start = max(i for i in range(len(ids)) if ids[i : i + len(human)] == human) + len(human)
    return ids[start : ids.index(tokenizer.token_id(EOT), start)]


def test_cli_reads_an_inline_tag_as_the_release_does_and_never_speaks_it(official_root, monkeypatch, tmp_path):
    """`stepaudio tts "(高兴1)Hello there."`: the LM gets the tag as the release's tts.py gives it (the text
    as written, tag in front, encoded after "\\n"), not as words to say; --tags 高兴1 asks the same."""
    from stepaudio.cli import main

    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "user"))
    monkeypatch.setattr(DualTokenizer, "load", classmethod(lambda cls, model: FakePromptTokenizer()))
    prompts = short_official_speech(monkeypatch)
    out = tmp_path / "x.wav"
    assert main(["tts", "(高兴1)Hello there.", "-o", str(out), "--model", str(official_root), "--seed", "0"]) == 0
    assert out.is_file()
    assert main(["tts", "Hello there.", "--tags", "高兴1", "-o", str(out), "--model", str(official_root)]) == 0
    (tokenizer, inline), (_, given) = prompts
    assert inline == given
    request = _request_turn(tokenizer, inline)
    newline = len(tokenizer.encode("\n", bos=True))
    assert request == tokenizer.encode("\n(高兴1)Hello there.", bos=True)[newline:]  # official tts.py's target tokens
    text = tokenizer.decode(inline)
    assert tokenizer.decode(request) == "(高兴1)Hello there."  # the words to say: "Hello there." alone
    assert "使用[Tingting]的声音" in text and "高兴one" not in text and "高兴一" not in text


def test_inline_music_tags_pick_the_music_vocoder_and_prompt(official_tts, monkeypatch):
    tts, prompts = official_tts
    used = vocoders_used(tts, monkeypatch)
    tts.synthesize("（RAP）你好。", seed=0)  # the release's own way of asking for RAP
    tts.synthesize("(哼唱)你好。", seed=0)
    tts.synthesize("(高兴1)(RAP)你好。", seed=0)  # as in the release, only a leading music tag counts
    assert used == ["music_decoder", "music_decoder", "decoder"]
    assert "用RAP方式" in prompts[0] and "我是说唱的婷婷。" in prompts[0]  # Tingting's RAP prompt
    assert "<|BOT|>human\n（RAP）你好。<|EOT|>" in prompts[0]  # written full-width: passed on full-width
    assert "用哼唱的方式" in prompts[1] and "<|BOT|>human\n(哼唱)你好。<|EOT|>" in prompts[1]
    assert "使用[Tingting]的声音" in prompts[2] and "<|BOT|>human\n(高兴1)(RAP)你好。<|EOT|>" in prompts[2]
    with pytest.raises(OptionError, match="no text to speak after the style tags"):
        tts.synthesize("(高兴1) ")
    tts.synthesize("(note)你好。", seed=0)  # not a tag: words, given to the LM as written, as the release does
    assert "使用[Tingting]的声音" in prompts[3] and "<|BOT|>human\n(note)你好。<|EOT|>" in prompts[3]
