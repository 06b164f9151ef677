import numpy as np

from conftest import speechlike
from stepaudio.audio import save_audio
from stepaudio.train.data.manifest import Utterance, read_manifest, write_manifest
from stepaudio.train.data.tokenize import tokenize_corpus


def test_token_files_are_written_recorded_and_resumed(tmp_path):
    utterances = []
    for i in range(3):
        save_audio(tmp_path / f"u{i}.flac", speechlike(0.5 + i / 2, 16000, seed=i), 16000)
        utterances.append(Utterance(f"u{i}.flac", "hi", "en", "v", 1.0, 1.0, 0.5 + i / 2, "train", "test"))
    write_manifest(tmp_path / "manifest.jsonl", utterances)
    calls = []

    def encode(samples, rate):
        calls.append(len(samples))
        return np.arange(5 * (len(samples) // 1920)) % 5120  # 5 tokens per 120 ms

    assert tokenize_corpus(tmp_path, encode, progress=False) == 3
    tokenized = read_manifest(tmp_path)
    assert [u.tokens for u in tokenized] == ["tokens/u0.npy", "tokens/u1.npy", "tokens/u2.npy"]
    assert len(np.load(tmp_path / "tokens/u2.npy")) == 5 * (24000 // 1920)
    assert tokenize_corpus(tmp_path / "manifest.jsonl", encode, progress=False) == 0 and len(calls) == 3
