"""Does the TTS LM read its text? Teacher-forced loss of utterances' speech given their own transcript
against given another transcript of the same language (same voice prompt, no tags).

    python bench/tts_text_use.py [--lm DIR] [--corpus data/corpus-v1] [--examples 40] [--split train|test]

On the training split it shows what the model learned; on the held-out test split, how well it predicts
speech for text it never saw.

A model that only continues speech scores both alike; the gap is how much the text tells it. Printed
for all speech tokens and for the semantic ones (the 16.7 Hz stream, the more text-bound of the two).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stepaudio.models import resolve_model
from stepaudio.tokenizer.interleave import SEMANTIC_CODES
from stepaudio.train.data.manifest import Utterance
from stepaudio.train.tts_data import TTSDataset
from stepaudio.tts.prompt import request_ids
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.text import normalize


def speech_loss(lm: SpeechLM, dataset: TTSDataset, target: Utterance, text: str, prompt: Utterance) -> list[float]:
    """[loss, accuracy, semantic loss, semantic accuracy] of target's speech after a request for `text`."""
    tokenizer = lm.tokenizer
    ids = request_ids(
        tokenizer,
        normalize(text, target.language),
        [],
        normalize(prompt.text, prompt.language),
        dataset.tokens[prompt.audio].tolist(),
    )
    speech = torch.as_tensor(dataset.tokens[target.audio]) + tokenizer.audio_offset
    sequence = torch.cat([torch.tensor(ids), speech])[None]
    with torch.inference_mode():
        logits = lm.model.lm_head(lm.model.hidden_states(sequence[:, :-1]))[0, len(ids) - 1 :]
    losses, right = F.cross_entropy(logits, speech, reduction="none"), logits.argmax(-1) == speech
    semantic = speech < tokenizer.audio_offset + SEMANTIC_CODES
    return [v.float().mean().item() for v in (losses, right, losses[semantic], right[semantic])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lm", type=Path, help="a mini-layout TTS LM export (default: the packaged one)")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus-v1"), help="a tokenized corpus")
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--split", choices=("train", "test"), default="train", help="whose utterances to score")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    lm = SpeechLM.from_mini(args.lm or resolve_model("mini").require("tts_lm"))
    dataset = TTSDataset(args.corpus / "manifest.jsonl", lm.tokenizer, split=args.split)
    rng = random.Random(args.seed)
    own, other = [], []
    for index in rng.sample(range(len(dataset)), min(args.examples, len(dataset))):
        target = dataset.targets[index]
        prompt = rng.choice([p for p in dataset.prompts[target.voice] if p is not target])
        stranger = rng.choice([u for u in dataset.targets if u.language == target.language and u is not target])
        own.append(speech_loss(lm, dataset, target, target.text, prompt))
        other.append(speech_loss(lm, dataset, target, stranger.text, prompt))
    names = ("loss", "accuracy", "semantic_loss", "semantic_accuracy")
    results = {
        f"{which}_text": dict(zip(names, np.mean(values, axis=0).round(3).tolist(), strict=True))
        for which, values in (("own", own), ("other", other))
    }
    print(json.dumps({"split": args.split, "examples": len(own), **results}, indent=2))


if __name__ == "__main__":
    main()
