import numpy as np

from conftest import speechlike
from stepaudio.audio import save_audio
from stepaudio.tokenizer.interleave import split
from stepaudio.train.data.manifest import Utterance, read_manifest, write_manifest
from stepaudio.train.data.tokenize import STALE_CHECK_FILES, tokenize_corpus


def write_corpus(root, count):
    utterances = []
    for i in range(count):
        save_audio(root / f"u{i}.flac", speechlike(0.5 + i / 2, 16000, seed=i), 16000)
        utterances.append(Utterance(f"u{i}.flac", "hi", "en", "v", 1.0, 1.0, 0.5 + i / 2, "train", "test"))
    write_manifest(root / "manifest.jsonl", utterances)


def codebook(per_group: int, shift: int = 0, codes: int = 1024, calls: list | None = None):
    """A stream encoder of `per_group` codes per 120 ms whose codes are their positions + shift."""

    def encode(samples, rate):
        if calls is not None:
            calls.append(len(samples))
        return (np.arange(per_group * (len(samples) // 1920)) + shift) % codes

    return encode


def semantic(shift=0, calls=None):
    return codebook(2, shift, 1024, calls)


def acoustic(shift=0, calls=None):
    return codebook(3, shift, 4096, calls)


def test_token_files_are_written_recorded_and_resumed(tmp_path):
    write_corpus(tmp_path, 3)
    calls = []
    assert tokenize_corpus(tmp_path, semantic(calls=calls), acoustic(), progress=False) == 3
    tokenized = read_manifest(tmp_path)
    assert [u.tokens for u in tokenized] == ["tokens/u0.npy", "tokens/u1.npy", "tokens/u2.npy"]
    tokens = np.load(tmp_path / "tokens/u2.npy")
    assert len(tokens) == 5 * (24000 // 1920) and tokens[:5].tolist() == [0, 1, 1024, 1025, 1026]  # s s a a a
    # resuming re-encodes the last few existing files only to check they come from this tokenizer
    assert tokenize_corpus(tmp_path / "manifest.jsonl", semantic(calls=calls), acoustic(), progress=False) == 0
    assert len(calls) == 3 + STALE_CHECK_FILES


def test_only_the_stream_of_another_codebook_is_made_again(tmp_path):
    write_corpus(tmp_path, 5)
    assert tokenize_corpus(tmp_path, semantic(), acoustic(), progress=False) == 5
    (tmp_path / "tokens/u4.npy").unlink()  # an interrupted run

    def near_tie(samples, rate):  # the same codebook on other hardware: one code of ~30 flips
        codes = acoustic()(samples, rate)
        codes[0] += 1
        return codes

    assert tokenize_corpus(tmp_path, semantic(), near_tie, progress=False) == 1
    calls = []
    assert tokenize_corpus(tmp_path, semantic(calls=calls), acoustic(shift=7), progress=False) == 5
    assert len(calls) == STALE_CHECK_FILES  # the semantic codes were kept, not computed again
    for i in range(5):
        semantic_codes, acoustic_codes = split(np.load(tmp_path / f"tokens/u{i}.npy"))
        assert semantic_codes[0] == 0 and acoustic_codes[0] == 7
    assert tokenize_corpus(tmp_path, semantic(shift=3), acoustic(shift=5), progress=False) == 5
    semantic_codes, acoustic_codes = split(np.load(tmp_path / "tokens/u0.npy"))
    assert semantic_codes[0] == 3 and acoustic_codes[0] == 5


def test_an_interrupted_remake_is_taken_up_again(tmp_path, monkeypatch):
    import stepaudio.train.data.tokenize as tokenize

    write_corpus(tmp_path, 6)
    assert tokenize_corpus(tmp_path, semantic(), acoustic(), progress=False) == 6
    saved = []

    def stop_after_two(path, array):
        if len(saved) == 2:
            raise KeyboardInterrupt
        saved.append(path)
        np.save(path, array)

    monkeypatch.setattr(tokenize.np, "save", stop_after_two)
    try:
        tokenize_corpus(tmp_path, semantic(), acoustic(shift=7), progress=False)
    except KeyboardInterrupt:
        pass
    monkeypatch.undo()
    assert tokenize_corpus(tmp_path, semantic(), acoustic(shift=7), progress=False) == 6
    assert all(split(np.load(tmp_path / f"tokens/u{i}.npy"))[1][0] == 7 for i in range(6))
