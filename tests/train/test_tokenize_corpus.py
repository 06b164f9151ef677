import numpy as np

from conftest import speechlike
from stepaudio.audio import save_audio
from stepaudio.train.data.manifest import Utterance, read_manifest, write_manifest
from stepaudio.train.data.tokenize import STALE_CHECK_FILES, tokenize_corpus


def write_corpus(root, count):
    utterances = []
    for i in range(count):
        save_audio(root / f"u{i}.flac", speechlike(0.5 + i / 2, 16000, seed=i), 16000)
        utterances.append(Utterance(f"u{i}.flac", "hi", "en", "v", 1.0, 1.0, 0.5 + i / 2, "train", "test"))
    write_manifest(root / "manifest.jsonl", utterances)


def test_token_files_are_written_recorded_and_resumed(tmp_path):
    write_corpus(tmp_path, 3)
    calls = []

    def encode(samples, rate):
        calls.append(len(samples))
        return np.arange(5 * (len(samples) // 1920)) % 5120  # 5 tokens per 120 ms

    assert tokenize_corpus(tmp_path, encode, progress=False) == 3
    tokenized = read_manifest(tmp_path)
    assert [u.tokens for u in tokenized] == ["tokens/u0.npy", "tokens/u1.npy", "tokens/u2.npy"]
    assert len(np.load(tmp_path / "tokens/u2.npy")) == 5 * (24000 // 1920)
    # resuming re-encodes the first few existing files only to check they come from this tokenizer
    assert tokenize_corpus(tmp_path / "manifest.jsonl", encode, progress=False) == 0
    assert len(calls) == 3 + STALE_CHECK_FILES


def test_files_made_by_another_tokenizer_are_made_again(tmp_path):
    write_corpus(tmp_path, 5)

    def old_codebook(samples, rate):
        return np.arange(5 * (len(samples) // 1920)) % 5120

    def same_but_a_near_tie(samples, rate):  # the same codebook on other hardware: one code of ~30 flips
        tokens = old_codebook(samples, rate)
        tokens[0] += 1
        return tokens

    def new_codebook(samples, rate):
        return (old_codebook(samples, rate) + 7) % 5120

    assert tokenize_corpus(tmp_path, old_codebook, progress=False) == 5
    (tmp_path / "tokens/u4.npy").unlink()  # an interrupted run
    assert tokenize_corpus(tmp_path, same_but_a_near_tie, progress=False) == 1
    assert tokenize_corpus(tmp_path, new_codebook, progress=False) == 5
    for i in range(5):
        assert np.load(tmp_path / f"tokens/u{i}.npy")[0] == 7
