import json
import os
import shutil

import numpy as np
import pytest
import soundfile as sf

from stepaudio.cli import main
from stepaudio.errors import DataError
from stepaudio.train.data import synth as synth_module
from stepaudio.train.data.manifest import FIELDS, read_manifest
from stepaudio.train.data.synth import SynthOptions, plan, synthesize_corpus
from stepaudio.train.data.texts import Sentence, held_out
from stepaudio.tts_engines import EngineUnavailable, Voice, get_engine


def pool_of(n: int = 200) -> dict[str, list[Sentence]]:
    return {
        "en": [Sentence(f"English sentence number {i}.", "en", "a" if i % 2 else "b") for i in range(n)],
        "zh": [Sentence(f"第{i}个句子。", "zh", "a") for i in range(n)],
    }


EN_ZH = (("en", 0.6), ("zh", 0.4))
FAKE_VOICES = [Voice("fake", name, language) for name, language in (("a", "en"), ("b", "en"), ("c", "zh"))]


def test_plan_holds_out_the_same_sentences_whatever_the_seed_and_budget():
    pool = pool_of()
    jobs, notes = plan(pool, FAKE_VOICES, SynthOptions(seed=1, mix=EN_ZH, max_utterances=50, test_voices=2))
    assert notes == [] and sum(job.split == "train" for job in jobs) == 50
    for language in ("en", "zh"):
        held = held_out(pool[language])
        test_texts = {job.text for job in jobs if job.split == "test" and job.language == language}
        assert test_texts == held
        assert not {job.text for job in jobs if job.split == "train"} & held
    en_test_voices = {job.voice.id for job in jobs if job.split == "test" and job.language == "en"}
    assert en_test_voices == {"fake:a", "fake:b"}  # two voices per held-out sentence
    other, _ = plan(pool, FAKE_VOICES, SynthOptions(seed=2, mix=EN_ZH, hours=0.05, test_voices=2))
    assert {j.text for j in other if j.split == "test"} == {j.text for j in jobs if j.split == "test"}


def test_plan_is_deterministic_and_a_bigger_budget_extends_a_smaller_one():
    small, _ = plan(pool_of(), FAKE_VOICES, SynthOptions(seed=5, mix=EN_ZH, max_utterances=40, test_voices=0))
    again, _ = plan(pool_of(), FAKE_VOICES, SynthOptions(seed=5, mix=EN_ZH, max_utterances=40, test_voices=0))
    big, _ = plan(pool_of(), FAKE_VOICES, SynthOptions(seed=5, mix=EN_ZH, max_utterances=100, test_voices=0))
    other_seed, _ = plan(pool_of(), FAKE_VOICES, SynthOptions(seed=6, mix=EN_ZH, max_utterances=40, test_voices=0))
    assert small == again and big[:40] == small and other_seed != small
    speeds = [job.speed for job in big]
    assert min(speeds) >= 0.85 and max(speeds) <= 1.2 and len(set(speeds)) > 10
    assert {job.source for job in big if job.language == "en"} == {"a", "b"}  # sources take turns


def test_plan_follows_the_language_mix_in_estimated_seconds():
    jobs, _ = plan(pool_of(), FAKE_VOICES, SynthOptions(mix=(("en", 3.0), ("zh", 1.0)), hours=0.2, test_voices=0))
    seconds = {"en": 0.0, "zh": 0.0}
    for job in jobs:
        seconds[job.language] += len(job.text) / synth_module.CHARS_PER_SECOND[job.language] / job.speed
    assert seconds["en"] / seconds["zh"] == pytest.approx(3.0, rel=0.05)
    assert sum(seconds.values()) == pytest.approx(720, rel=0.02)


def test_plan_stops_when_a_tiny_pool_runs_out():
    pool = {"en": [Sentence(f"only sentence {i}", "en", "a") for i in range(31)]}  # 30 held out, 1 left
    options = SynthOptions(mix=(("en", 1.0),), speed_range=(1, 1), pitch_range=(1, 1), max_utterances=5)
    jobs, notes = plan(pool, FAKE_VOICES[:1], options)
    assert sum(job.split == "train" for job in jobs) == 1
    assert notes == ["the texts and voices gave only 1 distinct training utterances"]


def test_plan_notes_languages_without_voices():
    jobs, notes = plan(pool_of(), FAKE_VOICES[:2], SynthOptions(max_utterances=5, test_voices=0))
    assert notes == ["language zh left out: no voice for it", "language yue left out: no voice for it"]
    assert {job.language for job in jobs} == {"en"}
    with pytest.raises(DataError, match="nothing to synthesise"):
        plan(pool_of(), [], SynthOptions(max_utterances=5))


@pytest.mark.parametrize("budget", [{"hours": -1.0}, {"max_utterances": -5}, {"hours": 1.0, "test_voices": -1}])
def test_negative_budgets_are_refused(budget):
    with pytest.raises(DataError, match="cannot be negative"):
        SynthOptions(**budget)


def espeak_and_flite() -> list[Voice]:
    voices = []
    for engine, name in (("espeak", "en-us"), ("flite", "slt")):
        try:
            voices += [v for v in get_engine(engine).voices() if v.name == name]
        except EngineUnavailable:
            pass
    if not voices:
        pytest.skip("neither espeak-ng nor flite is installed")
    return voices


def tiny_jobs(voices, seed=0, n=6):
    words = ("one", "two", "three", "four", "five", "six")
    pool = {"en": [Sentence(f"Test sentence {words[i % 6]} {i}.", "en", "t") for i in range(36)]}
    jobs, _ = plan(pool, voices, SynthOptions(seed=seed, mix=(("en", 1.0),), max_utterances=n, test_voices=0))
    return jobs


def audio_of(corpus):
    return {utt.audio: sf.read(corpus / utt.audio, dtype="int16")[0] for utt in read_manifest(corpus)}


def test_synthesis_writes_the_manifest_schema_and_16k_audio(tmp_path):
    jobs = tiny_jobs(espeak_and_flite())
    utterances, errors = synthesize_corpus(tmp_path, jobs, workers=1, progress=False)
    assert errors == [] and len(utterances) == 6
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert len(lines) == 6
    for line in lines:
        record = json.loads(line)
        assert tuple(record) == FIELDS
        info = sf.info(str(tmp_path / record["audio"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert record["duration"] == pytest.approx(info.frames / 16000, abs=1e-3)
        assert record["split"] == "train" and record["language"] == "en" and record["voice"].count(":") == 1
        assert 0.85 <= record["speed"] <= 1.2 and 0.88 <= record["pitch"] <= 1.15


def test_synthesis_is_deterministic_across_runs_and_worker_counts(tmp_path):
    voices = espeak_and_flite()
    synthesize_corpus(tmp_path / "one", tiny_jobs(voices), workers=1, progress=False)
    synthesize_corpus(tmp_path / "two", tiny_jobs(voices), workers=2, progress=False)
    assert (tmp_path / "one/manifest.jsonl").read_text() == (tmp_path / "two/manifest.jsonl").read_text()
    one, two = audio_of(tmp_path / "one"), audio_of(tmp_path / "two")
    assert one.keys() == two.keys() and all(np.array_equal(one[key], two[key]) for key in one)
    synthesize_corpus(tmp_path / "three", tiny_jobs(voices, seed=1), workers=1, progress=False)
    assert audio_of(tmp_path / "three").keys() != one.keys()


def test_resume_renders_only_missing_or_broken_files(tmp_path, monkeypatch):
    jobs = tiny_jobs(espeak_and_flite())
    synthesize_corpus(tmp_path, jobs, workers=1, progress=False)
    files = [tmp_path / job.audio for job in jobs]
    files[0].unlink()
    files[1].write_bytes(files[1].read_bytes()[:40])  # cut short, as by a crash
    before = {path: os.stat(path).st_mtime_ns for path in files[2:]}
    rendered = []
    render = synth_module.render
    monkeypatch.setattr(synth_module, "render", lambda job, corpus: rendered.append(job.audio) or render(job, corpus))
    utterances, _ = synthesize_corpus(tmp_path, jobs, workers=1, progress=False)
    assert sorted(rendered) == sorted([jobs[0].audio, jobs[1].audio]) and len(utterances) == 6
    assert before == {path: os.stat(path).st_mtime_ns for path in files[2:]}


def test_an_interrupted_run_keeps_what_it_finished(tmp_path, monkeypatch):
    jobs = tiny_jobs(espeak_and_flite())
    render, calls = synth_module.render, []

    def interrupted(job, corpus):
        calls.append(job)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return render(job, corpus)

    monkeypatch.setattr(synth_module, "render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        synthesize_corpus(tmp_path, jobs, workers=1, progress=False)
    assert len(read_manifest(tmp_path)) == 3
    assert not list(tmp_path.rglob(".*partial*"))
    monkeypatch.setattr(synth_module, "render", render)
    utterances, _ = synthesize_corpus(tmp_path, jobs, workers=1, progress=False)
    assert len(utterances) == 6


def test_failed_utterances_are_reported_and_left_out(tmp_path, monkeypatch):
    jobs = tiny_jobs(espeak_and_flite())

    def failing(job, corpus):
        raise DataError(f"cannot say {job.text}")

    monkeypatch.setattr(synth_module, "render", failing)
    utterances, errors = synthesize_corpus(tmp_path, jobs[:2], workers=1, progress=False)
    assert utterances == [] and errors == [f"cannot say {jobs[0].text}", f"cannot say {jobs[1].text}"]


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="apt-get install espeak-ng")
def test_cli_synth_then_stats(tmp_path, capsys):
    sentences = tmp_path / "zh.txt"
    sentences.write_text("\n".join(f"这是第{i}个句子。" for i in range(40)), encoding="utf-8")
    corpus = tmp_path / "corpus"
    argv = ["data", "synth", str(corpus), "--voices", "espeak:cmn*", "--sources", "", "--text", f"zh={sentences}"]
    argv += ["--mix", "zh=1", "--max-utterances", "3", "--test-voices", "1", "--jobs", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "espeak: 2 voices: cmn-latn-pinyin (zh), cmn-latn-pinyin+f3 (zh)" in out
    assert "plan: 3 training + 30 test utterances" in out
    utterances = read_manifest(corpus / "manifest.jsonl")
    assert len(utterances) == 33 and {u.split for u in utterances} == {"train", "test"}
    assert main(["data", "stats", str(corpus), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["split"]["test"]["utterances"] == 30 and table["language"]["zh"]["hours"] > 0


def test_cli_says_which_engines_are_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    assert main(["data", "voices", "--voices", "espeak:*,flite:*,festival:*"]) == 0
    out = capsys.readouterr().out
    assert "note: engine espeak skipped: espeak-ng not found (apt-get install espeak-ng)" in out
    assert "note: engine flite skipped" in out and "note: engine festival skipped" in out
    assert main(["data", "synth", str(tmp_path), "--voices", "espeak:*", "--max-utterances", "1"]) == 1
    assert "no TTS voice matches 'espeak:*'" in capsys.readouterr().err
