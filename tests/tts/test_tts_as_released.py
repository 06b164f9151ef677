"""Official weights speak as the release does by default (#33 point 3): the voice conditioned from the whole
recording at its own rate, the whole text as written in one LM call with the release's limits, one offline
flow call (bfloat16 on a GPU); sentence-by-sentence streaming on request; no duration bound fitted on mini.

The release is official `StepAudioTTS` (tts.py at stepfun-ai/Step-Audio a52b94d8), as recorded in the
goldens of tests/reference (its whole call on tiny checkpoints, with its random draws)."""

import math

import numpy as np
import pytest
import soundfile as sf
import torch
from tts_fixtures import FakePromptTokenizer, short_official_speech, tiny_tts, write_official_tts

from conftest import speechlike
from golden_tts import GoldenPromptTokenizer, golden, official_draws, write_golden_tts
from stepaudio.audio import mel_spectrogram
from stepaudio.audio.sinc import resample_sinc
from stepaudio.lm.backends.options import LOCAL
from stepaudio.tokenizer.dual import DualTokenizer
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND
from stepaudio.tts import TTS
from stepaudio.tts.pipeline import MAX_DURATION_FACTOR, SpeechCut, expected_seconds
from stepaudio.tts.speech_lm import SpeechLM

FP32 = 1e-5  # relative, as tests/reference/test_goldens.py
LOG_ABS = 1e-4  # log-mel units
CAMPPLUS = 5e-5  # relative: kaldi-native-fbank's float32 FFT against torchaudio's


def relative(ours, official) -> float:
    ours, official = torch.as_tensor(ours).double(), torch.as_tensor(official).double()
    assert ours.shape == official.shape, f"shape {tuple(ours.shape)} != official {tuple(official.shape)}"
    return float((ours - official).abs().max() / official.abs().max())


# --- the release's whole call, against its golden ---------------------------------------------------------


@pytest.fixture(scope="module")
def golden_root(tmp_path_factory):
    return write_golden_tts(tmp_path_factory.mktemp("golden"))


def load_golden_tts(root, monkeypatch, tmp_path, tag="fp32") -> tuple[TTS, GoldenPromptTokenizer]:
    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "user"))
    tokenizer = GoldenPromptTokenizer(tag)
    monkeypatch.setattr(DualTokenizer, "load", classmethod(lambda cls, model: tokenizer))
    return TTS.load(root, "cpu"), tokenizer


def test_the_default_official_call_is_the_release_call(golden_root, monkeypatch, tmp_path):
    """`TTS.synthesize(text, voice)` with official weights = StepAudioTTS.__call__(text, speaker): the same
    prompt ids (the text as written, not normalised), the same LM limit (max_length 8192), the same tokens
    in one LM call, the voice's mel and embedding from its whole wav, and the same audio on the same draws."""
    tts, tokenizer = load_golden_tts(golden_root, monkeypatch, tmp_path)
    tensors, meta = golden("tts_e2e_fp32")
    calls, generate = [], tts.lm.generate

    def recording(prompt, *args, **kwargs):
        calls.append(prompt)
        yield from generate(prompt, *args, **kwargs)

    monkeypatch.setattr(tts.lm, "generate", recording)
    assert tts.lm.max_len == meta["generate_kwargs"]["max_length"] == 8192
    with official_draws("fp32"):
        pcm, rate = tts.synthesize(meta["text"], voice=meta["speaker"], seed=0)
    assert rate == meta["rate"]
    assert calls == [tensors["prompt_ids"].tolist()]  # one call, the release's ids
    ((samples, sample_rate, prompt),) = tokenizer.calls  # the release's wav2token input: the wav at 16 kHz, trimmed
    assert sample_rate == 16_000 and prompt and np.array_equal(samples, tensors["speaker_wav"].numpy())
    voice = tts.prepare_voice(tts.voices.get(meta["speaker"]), tts.decoder).decoder_voice
    assert (voice.mel - tensors["speech_feat"].T).abs().max() < LOG_ABS  # all 86 frames of the 1 s wav
    assert relative(voice.embedding, tensors["speech_embedding"]) < CAMPPLUS
    error = relative(pcm, tensors["audio"])
    assert error < FP32, f"the default official call differs from the release's audio by {error:.2e} (relative)"


def test_the_official_flow_runs_in_bfloat16_as_released(golden_root, monkeypatch, tmp_path):
    """On a GPU the release runs its flow in bfloat16 (cosyvoice.py:44) and HiFT in float32; so does ours
    (`TTS.load` on cuda), here forced on the CPU: within twice the release's own bf16-vs-fp32 gap of its
    bf16 call, on that call's draws."""
    tts, _ = load_golden_tts(golden_root, monkeypatch, tmp_path, "bf16")
    tensors, meta = golden("tts_e2e_bf16")
    for decoder in (tts.decoder, tts.music_decoder):
        decoder.to("cpu", torch.bfloat16)
    assert tts.decoder.flow.dtype == torch.bfloat16 and next(tts.decoder.hift.parameters()).dtype == torch.float32
    mels = []
    generate = tts.decoder.flow.generate
    tts.decoder.flow.generate = lambda *a, **k: mels.append(generate(*a, **k)) or mels[-1]
    with official_draws("bf16"):
        pcm, _ = tts.synthesize(meta["text"], voice=meta["speaker"], seed=0)
    (mel,) = mels
    assert mel.dtype == torch.bfloat16
    gap = relative(tensors["mel_fp32_same_noise"], tensors["mel"])
    error = relative(mel.float(), tensors["mel"])
    assert error < 2 * gap, f"bf16 flow {error:.2e} from the release's bf16 mel (its own fp32 gap {gap:.2e})"
    assert np.isfinite(pcm).all() and len(pcm) == len(tensors["audio"])


# --- the voice: conditioned from the whole recording at its own rate -------------------------------------


@pytest.fixture
def official(tmp_path_factory, monkeypatch, tmp_path):
    """The tiny official folder of tests/tts (a random Step1 LM, stopped after 40 tokens as at an end of turn)."""
    root = tmp_path_factory.mktemp("official")
    write_official_tts(root)
    monkeypatch.setenv("STEPAUDIO_VOICES_DIR", str(tmp_path / "user"))
    tokenizer = FakePromptTokenizer()
    monkeypatch.setattr(DualTokenizer, "load", classmethod(lambda cls, model: tokenizer))
    calls = short_official_speech(monkeypatch)
    tts = TTS.load(root, "cpu")
    tts.fake_tokenizer, tts.calls, tts.root = tokenizer, calls, root
    return tts


def quiet_start(path, rate: int = 44_100) -> np.ndarray:
    """A 44.1 kHz stereo prompt: 0.6 s of silence, then 1.5 s of speech-like sound at a low level."""
    from stepaudio.audio import load_audio

    sound = np.concatenate([np.zeros(int(0.6 * rate), np.float32), 0.2 * speechlike(1.5, rate, seed=7)])
    sf.write(path, np.stack([sound, 0.5 * sound], axis=1), rate)
    return load_audio(path)[0]  # as the file holds it (16-bit), mixed to mono


def test_a_clone_prompt_is_conditioned_from_the_whole_recording_as_released(official, tmp_path):
    """A 44.1 kHz prompt with leading silence: the flow's prompt mel covers all of it (the 0.6 s of silence
    included, not normalised) at 22.05 kHz through the release's resampler; the embedding is CAMPPlus of
    all of it at 16 kHz; the tokens are the tokenizer's of the recording at 16 kHz (it normalises and trims
    a prompt itself, as the release's wav2token does)."""
    recording = quiet_start(tmp_path / "me.wav")
    prepared = official.clone_voice(tmp_path / "me.wav", " My  own words. ", official.decoder)
    voice = prepared.decoder_voice
    wav22 = resample_sinc(recording, 44_100, 22_050)
    assert torch.equal(voice.mel, mel_spectrogram(wav22))
    assert voice.mel.shape[1] == len(wav22) // 256  # 2.1 s: the whole recording
    silent = int(0.5 * 22_050 / 256)
    assert voice.mel[:, :silent].max() < -11 < voice.mel[:, silent + 20 :].max()  # the silence is kept
    assert torch.equal(voice.embedding, official.decoder.speaker(resample_sinc(recording, 44_100, 16_000)))
    samples, rate, prompt = official.fake_tokenizer.calls[-1]
    assert rate == 16_000 and prompt and np.array_equal(samples, resample_sinc(recording, 44_100, 16_000))
    assert prepared.transcript == " My  own words. "  # the release's clone_dict prompt_text, as written
    # what mini's conditioning would give (trimmed, peak-normalised 16 kHz, mel cut to the tokens): not this
    from stepaudio.tts.voices import condition_prompt

    ours = condition_prompt(recording, 44_100)
    assert official.decoder.voice(ours, 16_000, prepared.tokens).mel.shape[1] < voice.mel.shape[1]


def test_a_registered_voice_is_kept_as_recorded_and_conditioned_as_a_clone(official, tmp_path):
    """`stepaudio voices add` keeps the recording (mono, its own rate), so a user voice gets the conditioning
    of the same wav given as a clone prompt; the RAP speaker's embedding comes from the common vocoder's
    CAMPPlus, as preprocess_prompt_wav uses it for every speaker."""
    recording = quiet_start(tmp_path / "me.wav")
    entry = official.voices.add("me", tmp_path / "me.wav", "My own words.")
    stored, rate = entry.recording()
    assert rate == 44_100 and np.abs(stored - recording).max() < 1e-4
    voice = official.prepare_voice(entry, official.decoder).decoder_voice
    clone = official.clone_voice(tmp_path / "me.wav", "My own words.", official.decoder).decoder_voice
    # the same up to the 16-bit rounding of the stored mono mix (the quietest bins move by a few hundredths)
    assert (voice.mel - clone.mel).abs().max() < 0.05 and (voice.mel - clone.mel).abs().mean() < 1e-3
    assert voice.mel.shape == clone.mel.shape and relative(voice.embedding, clone.embedding) < 1e-3
    rap = official.voices.get("TingtingRAP")
    music = official.prepare_voice(rap, official.music_decoder).decoder_voice
    raw, raw_rate = rap.recording()
    assert torch.equal(music.embedding, official.decoder.speaker(resample_sinc(raw, raw_rate, 16_000)))


# --- generation: the whole text in one LM call, with the release's limits ----------------------------------


def request_turns(calls) -> list[str]:
    """The text to speak in each LM call (the last human turn of its prompt), decoded."""
    from stepaudio.lm.tokenizer import BOT, EOT

    turns = []
    for tokenizer, ids in calls:
        human = [tokenizer.token_id(BOT), *tokenizer.encode("human\n", bos=True)]
        start = max(i for i in range(len(ids)) if ids[i : i + len(human)] == human) + len(human)
        turns.append(tokenizer.decode(ids[start : ids.index(tokenizer.token_id(EOT), start)]))
    return turns


LONG = "Hello there! It costs $5, or 3 dollars (on sale). Second sentence here. 你好，世界！第三句。And the last one?"


def test_a_long_text_is_one_lm_call_as_written(official):
    """The release sends the whole text, not normalised, in one call; `stream_sentences` (--stream, the
    real-time pipeline) splits it, each sentence still as written for official weights."""
    pcm, _ = official.synthesize(LONG, seed=0)
    assert request_turns(official.calls) == [LONG]
    assert abs(len(pcm) / 22050 - 40 / AUDIO_TOKENS_PER_SECOND) < 0.05  # its 40 tokens, decoded at once
    official.calls.clear()
    chunks = list(official.stream_sentences(LONG, seed=0))
    turns = request_turns(official.calls)
    assert len(turns) >= 5 and turns[0] == "Hello there!" and "$5" in turns[1]
    assert "".join(turns).replace(" ", "") == LONG.replace(" ", "")
    assert len(chunks) >= len(turns)


class Speaking:
    """A stand-in LM call that says `count` speech tokens, then ends its turn (or stops at the cap it is given)."""

    def __init__(self, lm, count: int):
        self.lm, self.count, self.caps = lm, count, []

    def __call__(self, prompt, max_new_tokens, cancel=None, seed=None, min_new_tokens=0, audio_only=True):
        cap = min(max_new_tokens, self.lm.max_len - len(prompt))
        self.caps.append(cap)
        group = [17, 5, 1100, 2300, 4000]
        for i in range(min(self.count, cap)):
            yield group[i % 5]


@pytest.mark.parametrize("method", ["stream", "stream_sentences"])
def test_long_speech_is_kept_whole_for_official_weights_and_cut_for_mini(official, tmp_path, monkeypatch, method):
    """An LM that speaks three times what the mini-fitted duration expects: official weights keep all of it
    (only the model's own positions bound it), mini cuts it at twice the expectation."""
    text = "Hi there."
    expected = expected_seconds(text, "en") * AUDIO_TOKENS_PER_SECOND
    count = 5 * math.ceil(3 * expected / 5)
    monkeypatch.setattr(official.lm, "generate", Speaking(official.lm, count))
    pcm = np.concatenate(list(getattr(official, method)(text, seed=0)))
    assert abs(len(pcm) / 22050 - count / AUDIO_TOKENS_PER_SECOND) < 0.05  # every token voiced
    assert official.lm.generate.caps[0] >= official.lm.max_len - 1000  # no cap but the positions
    mini = tiny_tts(tmp_path)
    monkeypatch.setattr(mini.lm, "generate", Speaking(mini.lm, count))
    cut = np.concatenate(list(getattr(mini, method)(text, seed=0)))
    assert mini.lm.generate.caps == [int(MAX_DURATION_FACTOR * expected)]
    assert abs(len(cut) / 22050 - int(MAX_DURATION_FACTOR * expected) / AUDIO_TOKENS_PER_SECOND) < 0.05


def test_speech_past_the_model_positions_is_cut_as_in_the_release_and_said(official, monkeypatch):
    """The release's max_length=8192 counts the prompt; at the limit tts.py:109 drops the last token (taking
    it for the end of turn). Ours does the same and says so (SpeechCut)."""
    monkeypatch.setattr(official.lm, "generate", Speaking(official.lm, 10**6))
    with pytest.warns(SpeechCut, match="positions before its end and was cut"):
        pcm, _ = official.synthesize("Hi.", seed=0)
    said = official.lm.generate.caps[0]
    assert abs(len(pcm) / 22050 - (said - 1) / AUDIO_TOKENS_PER_SECOND) < 0.05


def test_the_release_call_may_say_any_token_and_voices_text_tokens_as_code_0(official, monkeypatch):
    """No audio-only mask in the release's call: whatever the LM says is kept, a text token voiced as code 0
    (the release's flow clamps id - 65536 at 0), and said (SpeechNote); our streamed option keeps speech only."""
    from stepaudio.tts.pipeline import SpeechNote

    said, generate = [], official.lm.generate

    def recording(*args, **kwargs):
        said.append([])
        for token in generate(*args, **kwargs):
            said[-1].append(token)
            yield token

    monkeypatch.setattr(official.lm, "generate", recording)
    voiced, decode = [], official.decoder.decode
    monkeypatch.setattr(
        official.decoder, "decode", lambda tokens, *a, **k: voiced.append(tokens) or decode(tokens, *a, **k)
    )
    with pytest.warns(SpeechNote, match="no speech; they are voiced as speech code 0"):
        official.synthesize("Hi.", seed=0)
    assert any(t < 0 for t in said[0]) and any(0 <= t < 5120 for t in said[0])  # a random LM: mostly text
    assert voiced == [[t if 0 <= t < 5120 else 0 for t in said[0]]]
    list(official.stream_sentences("Hi.", seed=0))
    assert said[1] and all(0 <= t < 5120 for t in said[1])


# --- bad input: clear errors, nothing written ----------------------------------------------------------------


def run_cli(official, args, capsys):
    from stepaudio.cli import main

    code = main(["tts", *args, "--model", str(official.root), "--seed", "0"])
    return code, capsys.readouterr()


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        ("silent", "the voice prompt is silent"),
        ("empty", "holds no samples"),
        ("ten_minutes", "over the 30 s limit"),
    ],
)
def test_bad_prompt_wavs_are_clear_errors_and_nothing_is_written(official, tmp_path, capsys, prompt, message):
    wav = tmp_path / f"{prompt}.wav"
    if prompt == "silent":
        sf.write(wav, np.zeros(3 * 16_000, np.float32), 16_000)
    elif prompt == "empty":
        sf.write(wav, np.zeros(0, np.float32), 16_000)
    else:
        with sf.SoundFile(wav, "w", 8_000, 1, subtype="PCM_16") as out:
            out.write(np.zeros(600 * 8_000, np.int16))
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    code, output = run_cli(
        official, ["Hello there.", "-o", str(out), "--prompt-wav", str(wav), "--prompt-text", "x"], capsys
    )
    assert code == 1 and message in output.err and "Traceback" not in output.err
    assert not list(out.parent.iterdir())  # nothing written, not even a temporary file


def test_ten_thousand_characters_are_a_clear_error_for_the_release_call(official, tmp_path, capsys):
    """The whole text does not fit the model's positions (8192 for the real model; this tiny one has 2048):
    a clear error before anything is written; --stream speaks it sentence by sentence instead."""
    out = tmp_path / "out" / "x.wav"
    out.parent.mkdir()
    text = ("今天天气很好，我们去公园散步。" * 700)[:10_000]
    code, output = run_cli(official, [text, "-o", str(out)], capsys)
    assert code == 1 and "positions, leaving none for speech" in output.err and "Traceback" not in output.err
    assert not list(out.parent.iterdir())


def test_the_cli_says_when_speech_was_cut_at_the_model_positions(official, tmp_path, capsys, monkeypatch):
    original = SpeechLM.from_official

    def short(directory, device="cpu", engine=LOCAL):
        lm = original(directory, device, engine)
        lm.max_len = 900  # the tiny prompt takes ~700: the speech reaches the end
        return lm

    monkeypatch.setattr(SpeechLM, "from_official", short)
    monkeypatch.setattr(SpeechLM, "generate", lambda self, prompt, *a, **k: Speaking(self, 10**6)(prompt, *a, **k))
    out = tmp_path / "x.wav"
    code, output = run_cli(official, ["Hi there.", "-o", str(out)], capsys)
    assert code == 0 and out.is_file() and "note: the speech filled the model's 900 positions" in output.err


def test_the_official_tts_lm_runs_quantised_or_says_what_it_cannot_run(official, tmp_path, capsys):
    """--quantization int8 quantises the TTS LM on our engine; an engine that cannot run is refused with what
    to do, before anything loads, never a traceback."""
    out = tmp_path / "x.wav"
    code, output = run_cli(official, ["Hi there.", "-o", str(out), "--quantization", "int8"], capsys)
    assert code == 0 and out.is_file(), output.err
    for engine, message in [("vllm", "vLLM"), ("http://127.0.0.1:1", "no vLLM server answers")]:
        code, output = run_cli(official, ["Hi there.", "-o", str(tmp_path / "y.wav"), "--engine", engine], capsys)
        assert code == 1 and message in output.err and "Traceback" not in output.err
    code, output = run_cli(official, ["Hi.", "-o", str(tmp_path / "y.wav"), "--quantization", "fp8"], capsys)
    assert code == 1 and "need --engine vllm" in output.err
