import numpy as np
import pytest
import soundfile as sf

from conftest import LIBRIVOX, speechlike
from stepaudio.audio import save_audio
from stepaudio.cli import main
from stepaudio.errors import DataError
from stepaudio.train.data.manifest import read_manifest
from stepaudio.train.data.real import add_real, find_pairs

needs_librivox = pytest.mark.skipif(not (LIBRIVOX / "transcription").is_file(), reason="pocketsphinx-testdata")


@needs_librivox
def test_librivox_sphinx_transcription_is_imported_as_16k(tmp_path):
    added, skipped = add_real(LIBRIVOX, tmp_path, "en", speaker="austen")
    assert skipped == [] and len(added) == 5
    first = added[0]
    assert first.text == (
        "and mister john dashwood had then leisure to consider how much there might be prudently in his power "
        "to do for them"
    )
    assert first.voice == "real:austen" and first.split == "train" and first.audio.startswith("audio/real/austen/")
    assert sum(u.duration for u in added) == pytest.approx(24.73, abs=0.01)  # the five clips
    info = sf.info(str(tmp_path / first.audio))
    assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
    add_real(LIBRIVOX, tmp_path, "en", speaker="austen")  # importing again replaces, never duplicates
    assert len(read_manifest(tmp_path)) == 5


def test_pairs_beside_each_clip_and_kaldi_listing(tmp_path):
    (tmp_path / "a").mkdir()
    for stem in ("one", "two", "three"):
        save_audio(tmp_path / "a" / f"{stem}.wav", speechlike(0.5, 22050), 22050)
    (tmp_path / "a" / "one.txt").write_text("  hello   world \n")
    (tmp_path / "a" / "two.lab").write_text("second clip")
    (tmp_path / "text").write_text("three the third clip\nmissing not here\n")
    pairs = find_pairs(tmp_path)
    assert [(p.name, t) for p, t in pairs] == [("one.wav", "hello world"), ("three.wav", "the third clip"),
                                               ("two.wav", "second clip")]  # fmt: skip
    corpus = tmp_path / "corpus"
    added, _ = add_real(tmp_path, corpus, "en", split="test", test_sentences=frozenset())
    assert {u.split for u in added} == {"test"}
    samples, rate = sf.read(corpus / added[0].audio)
    assert rate == 16000 and len(samples) == 8000 and np.abs(samples).max() > 0.1


def test_held_out_texts_go_to_test(tmp_path):
    save_audio(tmp_path / "x.wav", speechlike(0.5, 16000), 16000)
    (tmp_path / "x.txt").write_text("a held out sentence")
    added, _ = add_real(tmp_path, tmp_path / "c", "en", test_sentences=frozenset({"a held out sentence"}))
    assert added[0].split == "test"


def test_unreadable_clips_are_skipped_and_missing_transcripts_explained(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    (tmp_path / "bad.txt").write_text("words")
    added, skipped = add_real(tmp_path, tmp_path / "c", "en")
    assert added == [] and "bad.wav" in skipped[0] and "not readable audio" in skipped[0]
    (tmp_path / "bad.txt").unlink()
    with pytest.raises(DataError, match="no recordings with transcripts"):
        find_pairs(tmp_path)


@needs_librivox
def test_cli_add_real(tmp_path, capsys):
    assert main(["data", "add-real", str(LIBRIVOX), "--corpus", str(tmp_path)]) == 0
    assert "added 5 recordings" in capsys.readouterr().out
    assert {u.voice for u in read_manifest(tmp_path / "manifest.jsonl")} == {"real:librivox"}
