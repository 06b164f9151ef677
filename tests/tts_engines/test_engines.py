import shutil

import numpy as np
import pytest

from stepaudio.errors import DataError
from stepaudio.tts_engines import EngineUnavailable, Voice, find_voices, get_engine
from stepaudio.tts_engines import espeak as espeak_module
from stepaudio.tts_engines import piper as piper_module
from stepaudio.tts_engines.espeak import to_pinyin


def installed(engine: str) -> list[Voice]:
    try:
        return get_engine(engine).voices()
    except EngineUnavailable:
        return []


def first_voice(engine: str, language: str = "en") -> Voice:
    voices = [v for v in installed(engine) if v.language == language]
    if not voices:
        pytest.skip(f"{engine} ({language}) not installed here")
    return voices[0]


def test_missing_engines_are_skipped_with_how_to_install(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    monkeypatch.setattr(piper_module, "voice_files", lambda: {})
    voices, notes = find_voices()
    assert voices == []
    assert "engine espeak skipped: espeak-ng not found (apt-get install espeak-ng)" in notes
    assert any(note.startswith("engine flite skipped: flite not found (apt-get install flite") for note in notes)
    assert any(note.startswith("engine festival skipped: festival not found") for note in notes)
    assert any(note.startswith("engine piper skipped:") and "pip install" in note for note in notes)


def test_voice_patterns_filter_by_engine_and_name():
    if not installed("espeak"):
        pytest.skip("espeak-ng not installed")
    voices, _ = find_voices(("espeak:en-us*", "espeak:yue"))
    assert {v.id for v in voices} >= {"espeak:en-us", "espeak:yue"}
    assert all(v.id.startswith(("espeak:en-us", "espeak:yue")) for v in voices)


def test_espeak_pitch_argument_is_monotonic_and_centred():
    assert espeak_module.pitch_argument(1.0) == 50
    values = [espeak_module.pitch_argument(p) for p in (0.7, 0.85, 1.0, 1.2, 1.5)]
    assert values == sorted(values) and values[0] < 25 and values[-1] > 75


def test_mandarin_goes_to_espeak_as_pinyin(monkeypatch):
    voice = first_voice("espeak", "zh")
    assert voice.name.startswith("cmn-latn-pinyin")
    seen = []
    real_run_tool = espeak_module.run_tool
    monkeypatch.setattr(
        espeak_module, "run_tool", lambda command, text: seen.append(text) or real_run_tool(command, text)
    )
    samples, rate = get_engine("espeak").synthesize(voice, "你好，重庆。", 1.0, 1.0, 0)
    assert seen == ["ni3 hao3, chong2 qing4."]
    assert rate == 22050 and len(samples) / rate > 0.8 and np.abs(samples).max() > 0.1


@pytest.mark.parametrize("engine", ["espeak", "flite", "festival", "piper"])
def test_engines_are_deterministic_and_follow_speed(engine):
    voice = first_voice(engine)
    tts = get_engine(engine)
    text = "The quick brown fox jumps over the lazy dog."
    samples, rate = tts.synthesize(voice, text, 1.0, 1.0, 7)
    again, again_rate = tts.synthesize(voice, text, 1.0, 1.0, 7)
    assert rate == again_rate and np.array_equal(samples, again)
    assert samples.dtype == np.float32 and 1.0 < len(samples) / rate < 6.0
    fast, fast_rate = tts.synthesize(voice, text, 1.5, 1.0, 7)
    assert len(fast) / fast_rate < 0.85 * len(samples) / rate


@pytest.mark.parametrize("engine", ["flite", "piper"])
def test_pitch_without_native_support_keeps_duration(engine):
    voice = first_voice(engine)
    tts = get_engine(engine)
    base, rate = tts.synthesize(voice, "Hello there, how are you?", 1.0, 1.0, 3)
    high, high_rate = tts.synthesize(voice, "Hello there, how are you?", 1.0, 1.25, 3)
    assert high_rate == round(tts.render(voice, "Hello.", 1.0, 3)[1] * 1.25)
    assert len(high) / high_rate == pytest.approx(len(base) / rate, rel=0.15)


def test_piper_noise_follows_the_seed():
    voice = first_voice("piper")
    tts = get_engine("piper")
    one, _ = tts.synthesize(voice, "A seeded voice.", 1.0, 1.0, 1)
    two, _ = tts.synthesize(voice, "A seeded voice.", 1.0, 1.0, 2)
    assert not (len(one) == len(two) and np.array_equal(one, two))


def test_unknown_engine_is_a_clear_error():
    with pytest.raises(DataError, match="unknown TTS engine"):
        get_engine("sam")


def test_pinyin_reads_phrases_and_keeps_punctuation_espeak_pauses_on():
    assert to_pinyin("我们去重庆吧。") == "wo3 men5 qu4 chong2 qing4 ba5."
    assert to_pinyin("你好，世界！") == "ni3 hao3, shi4 jie4!"
    assert to_pinyin("他说：“好”") == "ta1 shuo1: hao3"
