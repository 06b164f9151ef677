"""Speech tokens for every utterance of a corpus, computed once and referenced from the manifest.

The flow decoder and the TTS LM both train on them, so they are written as `tokens/<stem>.npy`
(interleaved audio indices 0..5119) next to the audio, and the manifest gains each file's path.
Re-running resumes: utterances whose token file exists are skipped, unless the existing files were made
by another tokenizer (a new codebook, another model folder). That is checked by encoding a few of them
again, which needs no record of which tokenizer made what and cannot be fooled by file dates.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stepaudio.audio import load_audio
from stepaudio.train.data.manifest import Utterance, manifest_dir, read_manifest, write_manifest

Encode = Callable[[np.ndarray, int], np.ndarray]  # samples, rate -> interleaved audio indices

# Re-encoding on other hardware may flip a few near-tie codes; another codebook agrees almost nowhere.
SAME_TOKENIZER_AGREEMENT = 0.9
STALE_CHECK_FILES = 3


def tokenize_corpus(manifest: Path, encode: Encode, progress: bool = True) -> int:
    """Write missing token files and the manifest's `tokens` fields; returns how many were computed."""
    root, utterances = manifest_dir(manifest), read_manifest(manifest)
    manifest_path = root / "manifest.jsonl" if Path(manifest).is_dir() else Path(manifest)
    (root / "tokens").mkdir(exist_ok=True)
    if made_by_another_tokenizer(root, utterances, encode):
        stale = list((root / "tokens").glob("*.npy"))
        print(f"{len(stale)} token files in {root / 'tokens'} were made by another tokenizer; making them again")
        for path in stale:
            path.unlink()
    done, updated = 0, []
    for utt in tqdm(utterances, desc="tokenize", unit="utt", disable=not progress):
        relative = token_path(utt)
        if not (root / relative).is_file():
            samples, rate = load_audio(root / utt.audio)
            partial = root / f"{relative}.partial.npy"
            np.save(partial, np.asarray(encode(samples, rate), dtype=np.int16))
            partial.replace(root / relative)
            done += 1
        updated.append(dataclasses.replace(utt, tokens=relative))
        if done and done % 500 == 0:  # an interrupted run keeps what it computed
            write_manifest(manifest_path, updated + utterances[len(updated) :])
    write_manifest(manifest_path, updated)
    return done


def token_path(utt: Utterance) -> str:
    return f"tokens/{Path(utt.audio).stem}.npy"


def made_by_another_tokenizer(root: Path, utterances: Sequence[Utterance], encode: Encode) -> bool:
    """Whether the first few existing token files differ from what `encode` makes of their audio now."""
    existing = [utt for utt in utterances if (root / token_path(utt)).is_file()][:STALE_CHECK_FILES]
    for utt in existing:
        stored = np.load(root / token_path(utt))
        fresh = np.asarray(encode(*load_audio(root / utt.audio)))
        if len(stored) != len(fresh) or np.mean(stored == fresh) < SAME_TOKENIZER_AGREEMENT:
            return True
    return False
