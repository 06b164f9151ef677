"""Speech tokens for every utterance of a corpus, computed once and referenced from the manifest.

The flow decoder and the TTS LM both train on them, so they are written as `tokens/<stem>.npy`
(interleaved audio indices 0..5119) next to the audio, and the manifest gains each file's path.
Re-running resumes: utterances whose token file exists are skipped, unless the existing files were made
by another tokenizer (a new codebook, another model folder). That is checked per stream by encoding a
few of them again, which needs no record of which tokenizer made what and cannot be fooled by file
dates. Only a stream that changed is made again: a retrained acoustic codebook keeps the semantic codes,
the slow half (the Whisper encoder), and re-tokenizes a corpus many times faster.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stepaudio.audio import load_audio
from stepaudio.tokenizer.interleave import interleave, split
from stepaudio.train.data.manifest import Utterance, manifest_dir, read_manifest, write_manifest

Encode = Callable[[np.ndarray, int], np.ndarray]  # samples, rate -> one stream's codes

# Re-encoding on other hardware may flip a few near-tie codes; another codebook agrees almost nowhere.
SAME_TOKENIZER_AGREEMENT = 0.9
STALE_CHECK_FILES = 3
STREAMS = ("semantic", "acoustic")


def tokenize_corpus(manifest: Path, semantic: Encode, acoustic: Encode, progress: bool = True) -> int:
    """Write missing or stale token files and the manifest's `tokens` fields; returns how many were
    written."""
    root, utterances = manifest_dir(manifest), read_manifest(manifest)
    manifest_path = root / "manifest.jsonl" if Path(manifest).is_dir() else Path(manifest)
    (root / "tokens").mkdir(exist_ok=True)
    encoders = (semantic, acoustic)
    stale = streams_made_by_another_tokenizer(root, utterances, encoders)
    if any(stale):
        count = len(list((root / "tokens").glob("*.npy")))
        names = " and ".join(name for name, changed in zip(STREAMS, stale, strict=True) if changed)
        print(f"{count} token files in {root / 'tokens'} hold {names} codes of another tokenizer; making those again")
    done, updated = 0, []
    for utt in tqdm(utterances, desc="tokenize", unit="utt", disable=not progress):
        relative = token_path(utt)
        remake = stale if (root / relative).is_file() else [True, True]
        if any(remake):
            samples, rate = load_audio(root / utt.audio)
            kept = (None, None) if all(remake) else split(np.load(root / relative))
            codes = [
                encode(samples, rate) if again else old
                for encode, again, old in zip(encoders, remake, kept, strict=True)
            ]
            partial = root / f"{relative}.partial.npy"
            np.save(partial, interleave(*codes).astype(np.int16))
            partial.replace(root / relative)
            done += 1
        updated.append(dataclasses.replace(utt, tokens=relative))
        if done and done % 500 == 0:  # an interrupted run keeps what it computed
            write_manifest(manifest_path, updated + utterances[len(updated) :])
    write_manifest(manifest_path, updated)
    return done


def token_path(utt: Utterance) -> str:
    return f"tokens/{Path(utt.audio).stem}.npy"


def streams_made_by_another_tokenizer(
    root: Path, utterances: Sequence[Utterance], encoders: Sequence[Encode]
) -> list[bool]:
    """Per stream, whether the last few existing token files differ from what its encoder makes of
    their audio now. The last: files are made again in manifest order, so after an interrupted run the
    last ones still show what is left to do."""
    existing = [utt for utt in utterances if (root / token_path(utt)).is_file()][-STALE_CHECK_FILES:]
    stale = [False] * len(encoders)
    for utt in existing:
        stored = split(np.load(root / token_path(utt)))
        samples, rate = load_audio(root / utt.audio)
        for index, encode in enumerate(encoders):
            fresh = np.asarray(encode(samples, rate))[: len(stored[index])]
            if len(fresh) != len(stored[index]) or np.mean(stored[index] == fresh) < SAME_TOKENIZER_AGREEMENT:
                stale[index] = True
    return stale
