"""Training examples of the mini TTS LM, in the official TTS prompt format.

Each example is one utterance of the corpus spoken in the voice of another utterance of the same
voice: the prompt is built exactly as at inference (system turn, the other utterance's transcript and
audio tokens as the example turn pair, this utterance's tagged text); the targets are the audio
tokens and end-of-turn tokens of both assistant turns, and each transcript's and its speech's
positions go to the attention guide (`stepaudio.train.attention_guide`), with the text position each
speech token reads where the manifest has the words' times (`stepaudio data align`). Tags come from the manifest:
the language tag (always for Cantonese, which shares its script with Mandarin, half of the time
otherwise) and a speed tag when the utterance was synthesised clearly faster or slower than the
voice's natural rate.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from stepaudio.lm.tokenizer import BOT, Tokenizer
from stepaudio.tokenizer.interleave import AUDIO_VOCAB
from stepaudio.train.attention_guide import Span
from stepaudio.train.data.manifest import Utterance, manifest_dir, read_split
from stepaudio.train.decoder_data import tokenized
from stepaudio.tts.prompt import CANTONESE_TAGS, LANGUAGE_TAG, request_ids
from stepaudio.tts.text import normalize

IGNORE = -100  # label of positions without a loss

# speaking-rate factor bands of the corpus (0.85 .. 1.2) -> speed tag; in between: no tag
SPEED_BANDS = ((0.0, 0.875, "慢速2"), (0.875, 0.935, "慢速1"), (1.075, 1.15, "快速1"), (1.15, 9.0, "快速2"))


def speed_tag(speed: float) -> str | None:
    for low, high, tag in SPEED_BANDS:
        if low <= speed < high:
            return tag
    return None


class TTSDataset(torch.utils.data.Dataset):
    """Utterance i -> (ids [L], labels [L], spans); labels are IGNORE except on audio tokens and their
    EOT; spans: where the example turn's and the request's transcripts and speech lie."""

    def __init__(
        self,
        manifest: Path,
        tokenizer: Tokenizer,
        split: str = "train",
        max_seconds: float = 10.0,
        max_prompt_seconds: float = 4.0,
        seed: int = 0,
        word_times: bool = True,
    ):
        """word_times: spans read where the manifest times the words (False: an even pace everywhere)."""
        root = manifest_dir(manifest)
        utterances = tokenized(read_split(manifest, split), root)
        self.tokens = {u.audio: np.load(root / u.tokens).astype(np.int64).reshape(-1) for u in utterances}
        self.targets = [u for u in utterances if u.duration <= max_seconds]
        self.prompts: dict[str, list[Utterance]] = defaultdict(list)
        for u in utterances:
            if u.duration <= max_prompt_seconds:
                self.prompts[u.voice].append(u)
        self.targets = [u for u in self.targets if any(p is not u for p in self.prompts[u.voice])]
        # for batching by length: the target's speech is most of an example (its prompt is drawn per example)
        self.lengths = [len(self.tokens[u.audio]) for u in self.targets]
        self.tokenizer, self.random, self.word_times = tokenizer, random.Random(seed), word_times

    def __len__(self) -> int:
        return len(self.targets)

    def tags(self, utterance: Utterance) -> list[str]:
        tags = []
        if utterance.language == "yue":
            tags.append(self.random.choice(CANTONESE_TAGS))
        elif utterance.language in LANGUAGE_TAG and self.random.random() < 0.5:
            tags.append(LANGUAGE_TAG[utterance.language])
        speed = speed_tag(utterance.speed)
        return tags + ([speed] if speed else [])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, list[Span]]:
        target = self.targets[index]
        prompt = self.random.choice([p for p in self.prompts[target.voice] if p is not target])
        offset, eot = self.tokenizer.audio_offset, self.tokenizer.eos_id
        target_text, prompt_text = normalize(target.text, target.language), normalize(prompt.text, prompt.language)
        ids = request_ids(
            self.tokenizer, target_text, self.tags(target), prompt_text, self.tokens[prompt.audio].tolist()
        )
        audio = [offset + int(k) for k in self.tokens[target.audio]] + [eot]
        # The example turn's audio is speech for its transcript too: scored as well, it doubles the
        # supervised tokens per sequence at no extra cost.
        labels = [i if offset <= i < offset + AUDIO_VOCAB else IGNORE for i in ids]
        prompt_speech = [p for p, i in enumerate(labels) if i != IGNORE]
        labels[prompt_speech[-1] + 1] = eot
        # turns: system, human (prompt transcript), assistant (its speech), human (request), assistant
        bot = self.tokenizer.token_id(BOT)
        turns = [p for p, i in enumerate(ids) if i == bot]
        spans = [
            self.span(ids, (turns[1], turns[2]), (prompt_speech[0], prompt_speech[-1] + 1), prompt, prompt_text),
            self.span(ids, (turns[3], turns[4]), (len(ids), len(ids) + len(audio) - 1), target, target_text),
        ]
        return torch.tensor(ids + audio), torch.tensor(labels + audio), spans

    def span(
        self, ids: list[int], turn: tuple[int, int], speech: tuple[int, int], utterance: Utterance, text: str
    ) -> Span:
        """Where a human turn holding `text` and the speech of that text lie in `ids`, and what each speech
        token reads."""
        return Span(*turn, *speech, self.reading(ids[turn[0] : turn[1]], speech[1] - speech[0], utterance, text))

    def reading(self, turn: list[int], speech_len: int, utterance: Utterance, text: str) -> torch.Tensor | None:
        """The position in `turn` (the human turn holding `text`) that each of its speech tokens reads,
        from the words' times; None without them."""
        words = utterance.words
        if not self.word_times or not words or [word for word, _, _ in words] != text.split():
            return None
        decoded = self.tokenizer.decode(turn)
        chars, times, at = [], [], decoded.rfind(text)
        for word, start, end in words:
            at = decoded.index(word, at)
            chars += [at, at + len(word)]
            times += [start, end]
            at += len(word)
        seconds = (np.arange(speech_len) + 0.5) / speech_len * utterance.duration
        char = np.interp(seconds, np.maximum.accumulate(times), chars)
        ends = [0] + [len(self.tokenizer.decode(turn[: k + 1])) for k in range(len(turn))]
        return torch.from_numpy(np.interp(char, ends, np.arange(len(ends))).astype(np.float32))


def collate_tts(examples: list[tuple[torch.Tensor, torch.Tensor, list[Span]]]) -> dict:
    """Right-padded ids [B, L] and labels [B, L] (IGNORE on padding), and each row's spans."""
    width = max(len(ids) for ids, _, _ in examples)
    ids = torch.zeros(len(examples), width, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for row, (example_ids, example_labels, _) in enumerate(examples):
        ids[row, : len(example_ids)] = example_ids
        labels[row, : len(example_labels)] = example_labels
    return {"ids": ids, "labels": labels, "spans": [spans for _, _, spans in examples]}
