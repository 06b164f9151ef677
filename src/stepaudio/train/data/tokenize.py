"""Speech tokens for every utterance of a corpus, computed once and referenced from the manifest.

The flow decoder and the TTS LM both train on them, so they are written as `tokens/<stem>.npy`
(interleaved audio indices 0..5119) next to the audio, and the manifest gains each file's path.
Re-running resumes: utterances whose token file exists are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from stepaudio.audio import load_audio
from stepaudio.train.data.manifest import manifest_dir, read_manifest, write_manifest

Encode = Callable[[np.ndarray, int], np.ndarray]  # samples, rate -> interleaved audio indices


def tokenize_corpus(manifest: Path, encode: Encode, progress: bool = True) -> int:
    """Write missing token files and the manifest's `tokens` fields; returns how many were computed."""
    root, utterances = manifest_dir(manifest), read_manifest(manifest)
    manifest_path = root / "manifest.jsonl" if Path(manifest).is_dir() else Path(manifest)
    (root / "tokens").mkdir(exist_ok=True)
    done, updated = 0, []
    for utt in tqdm(utterances, desc="tokenize", unit="utt", disable=not progress):
        relative = f"tokens/{Path(utt.audio).stem}.npy"
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
