"""The voice registry: built-in and user voices, prompts kept as recorded and conditioned per model."""

import json

import numpy as np
import pytest
import soundfile as sf
from tts_fixtures import builtin_voice_dir

from conftest import speechlike
from stepaudio.audio import load_audio
from stepaudio.errors import AudioError, OptionError
from stepaudio.tts.voices import VOICES_DIR_ENV, VoiceRegistry, read_official_speakers, user_voices_dir


@pytest.fixture
def registry(tmp_path):
    return VoiceRegistry.load(builtin_voice_dir(tmp_path / "builtin"), tmp_path / "user")


def test_user_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(VOICES_DIR_ENV, str(tmp_path / "v"))
    assert user_voices_dir() == tmp_path / "v"
    monkeypatch.delenv(VOICES_DIR_ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert user_voices_dir() == tmp_path / "xdg" / "stepaudio" / "voices"


def test_add_keeps_a_stereo_prompt_as_recorded_and_remove_deletes_it(registry, tmp_path):
    """Stored mixed to mono at its own rate, untrimmed and not normalised (official weights condition the
    recording as the release does); mini's conditioning is made when the voice is used."""
    quiet = 0.05 * speechlike(2.0, 44_100)
    padded = np.concatenate([np.zeros(44_100), quiet, np.zeros(44_100)])
    stereo = np.stack([padded, 0.5 * padded], axis=1)
    sf.write(tmp_path / "me.wav", stereo, 44_100)
    voice = registry.add("me", tmp_path / "me.wav", "  The exact   words. ")
    assert voice.transcript == "The exact words." and not voice.builtin
    samples, rate = load_audio(voice.wav)
    assert rate == 44_100 and len(samples) == len(padded)  # mono, as recorded
    assert np.abs(samples - load_audio(tmp_path / "me.wav")[0]).max() < 1e-4
    conditioned = voice.samples()  # mini's: 16 kHz, silence trimmed, peak-normalised
    assert 2.0 <= len(conditioned) / 16_000 < 2.6 and abs(np.abs(conditioned).max() - 0.999) < 0.01
    assert registry.names() == ["anna", "me"] and registry.get("me").transcript == "The exact words."
    voice.cache_file("mini").write_bytes(b"cache")
    registry.remove("me")
    assert registry.names() == ["anna"] and not list((tmp_path / "user").iterdir())


def test_bad_requests_are_option_errors(registry, tmp_path):
    sf.write(tmp_path / "p.wav", speechlike(1.0, 16_000), 16_000)
    with pytest.raises(OptionError, match="unknown voice 'bob'.*anna"):
        registry.get("bob")
    with pytest.raises(OptionError, match="built-in"):
        registry.remove("anna")
    with pytest.raises(OptionError, match="built-in"):
        registry.add("anna", tmp_path / "p.wav", "text")
    with pytest.raises(OptionError, match="voice name"):
        registry.add("../evil", tmp_path / "p.wav", "text")
    with pytest.raises(OptionError, match="transcript"):
        registry.add("ok", tmp_path / "p.wav", " ")
    with pytest.raises(OptionError, match="no user voice"):
        registry.remove("ghost")
    sf.write(tmp_path / "silent.wav", np.zeros(16_000), 16_000)
    with pytest.raises(AudioError, match="silent"):
        registry.add("silent", tmp_path / "silent.wav", "nothing")


def test_official_speakers_folder(tmp_path):
    folder = builtin_voice_dir(tmp_path / "speakers", "Tingting")
    (folder / "Tingting.wav").rename(folder / "Tingting_prompt.wav")
    (folder / "speakers_info.json").write_text(json.dumps({"Tingting": "你好", "Missing": "没有文件"}))
    (speaker,) = read_official_speakers(folder)
    assert (speaker.name, speaker.transcript, speaker.builtin) == ("Tingting", "你好", True)
    assert read_official_speakers(tmp_path / "nowhere") == []


def test_builtin_mini_voices_ship_the_tokens_of_the_packaged_tokenizer():
    """The shipped caches are named by the packaged codebooks' hash and hold what they make (recipe stage 3
    caches them again after the codebooks are retrained)."""
    from stepaudio.errors import ModelNotFound
    from stepaudio.tokenizer.dual import DualTokenizer, mini_tokens_tag

    try:
        registry, tokenizer = VoiceRegistry.for_model("mini"), DualTokenizer.load("mini")
    except ModelNotFound as error:
        pytest.skip(str(error))
    tag = mini_tokens_tag()
    for name, voice in registry.builtin.items():
        cache = voice.cache_file(tag)
        assert cache.is_file(), f"{name} has no cache for {tag}: run recipes/mini/run.sh 3 3"
        tokens = tokenizer.encode(voice.samples(), 16_000, prompt=True).interleaved
        assert np.array_equal(np.load(cache)["tokens"], tokens), name


def test_the_mini_tokens_tag_follows_the_codebooks(tmp_path, monkeypatch):
    from stepaudio.models import store
    from stepaudio.tokenizer.dual import mini_tokens_tag

    before = mini_tokens_tag()
    assert before.startswith("mini-") and before == mini_tokens_tag()
    resolved = store.resolve_model("mini")
    acoustic = tmp_path / "acoustic_codebook.safetensors"
    packaged = resolved.require("acoustic_codebook")
    acoustic.write_bytes(packaged.read_bytes() + b"retrained")
    acoustic.with_suffix(".json").write_bytes(packaged.with_suffix(".json").read_bytes())
    found = {**resolved.found, "acoustic_codebook": acoustic}
    monkeypatch.setattr(store, "_resolve_mini", lambda: store.ResolvedModel("mini", "mini", found, {}))
    assert mini_tokens_tag() != before
