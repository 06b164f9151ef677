"""Are the speech codes about what is said, or about who says it? How much voices of one language share
each stream's codes, on a tokenized corpus.

    python bench/token_voices.py [--corpus data/corpus-v1] [--split train|test]

For each stream and language, the code histograms of every voice are compared: the overlap of two
distributions is sum(min(p, q)) (1: the same codes as often, 0: no code in common). "between voices"
averages it over pairs of voices; "within a voice" compares two halves of each voice's utterances, the
ceiling for that much speech. "owned" is the share of tokens on codes that one voice makes 80 % of the
uses of. A TTS LM learns what codes a text becomes for each voice apart when its codes are a voice's own.

The mini tokenizer on data/corpus-v1 (17 English voices, 2026-11-27): semantic 0.70 between voices,
acoustic 0.13, with a third of the acoustic tokens on codes owned by one voice (the 40 ms mel slices
hold the voice); the same slices with each utterance's mean taken away (a corpus tokenized by a codebook of
`stepaudio train kmeans acoustic --utterance-mean`), 0.17.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from stepaudio.errors import StepAudioError
from stepaudio.tokenizer.interleave import ACOUSTIC_CODES, SEMANTIC_CODES, split
from stepaudio.train.data.manifest import manifest_dir, read_split
from stepaudio.train.decoder_data import tokenized

OWNED = 0.8  # a code is a voice's own when that voice makes this share of its uses


def overlap(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.minimum(p / p.sum(), q / q.sum()).sum())


def stream_report(counts: dict[str, list[np.ndarray]]) -> dict:
    """counts: voice -> code histogram of each of its utterances."""
    totals = {voice: np.sum(hists, axis=0) for voice, hists in counts.items()}
    between = [overlap(totals[a], totals[b]) for a, b in itertools.combinations(sorted(totals), 2)]
    within = [
        overlap(np.sum(hists[0::2], axis=0), np.sum(hists[1::2], axis=0)) for hists in counts.values() if len(hists) > 1
    ]
    uses = np.stack(list(totals.values()))  # [voices, codes]
    all_uses = uses.sum(0)
    owned = uses.max(0) >= OWNED * np.maximum(all_uses, 1)
    return {
        "between_voices": round(float(np.mean(between)), 3) if between else None,
        "within_a_voice": round(float(np.mean(within)), 3) if within else None,
        "owned": round(float(all_uses[owned].sum() / all_uses.sum()), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus-v1"), help="a tokenized corpus")
    parser.add_argument("--split", choices=("train", "test"), default="train")
    args = parser.parse_args()
    manifest = args.corpus / "manifest.jsonl"
    root = manifest_dir(manifest)
    try:
        utterances = tokenized(read_split(manifest, args.split), root)
    except StepAudioError as error:
        parser.error(str(error))
    # language -> stream -> voice -> histograms
    counts = defaultdict(lambda: {"semantic": defaultdict(list), "acoustic": defaultdict(list)})
    for utterance in utterances:
        semantic, acoustic = split(np.load(root / utterance.tokens).reshape(-1))
        by_stream = counts[utterance.language]
        by_stream["semantic"][utterance.voice].append(np.bincount(semantic, minlength=SEMANTIC_CODES))
        by_stream["acoustic"][utterance.voice].append(np.bincount(acoustic, minlength=ACOUSTIC_CODES))
    report = {
        language: {"voices": len(streams["semantic"])}
        | {stream: stream_report(voices) for stream, voices in streams.items()}
        for language, streams in sorted(counts.items())
    }
    print(json.dumps({"corpus": str(args.corpus), "split": args.split, **report}, indent=2))


if __name__ == "__main__":
    main()
