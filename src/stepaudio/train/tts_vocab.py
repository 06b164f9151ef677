"""The text vocabulary of the mini TTS LM: a small SentencePiece BPE model trained on the corpus text.

Every character of the training text gets its own piece (Chinese characters included) and unknown
ones fall back to bytes, so any text can be encoded. The official prompt's fixed strings (the system
prompts, the role names, the tag list) are part of the training text, weighted by how often every
example carries them, so BPE gives them long pieces and the long constant system turn costs few
positions. The audio ids follow the text pieces (`audio_offset` = number of pieces), which keeps the
embedding small instead of padding the vocabulary up to the official 65 536.
"""

from __future__ import annotations

import io
from pathlib import Path

from stepaudio.lm.prompts import HUMMING_SYSTEM_PROMPT, RAP_SYSTEM_PROMPT, TAGS, tts_system_prompt
from stepaudio.lm.tokenizer import BOT, EOT

PROMPT_WEIGHT = 2000  # copies of each fixed prompt string among the training sentences


def fixed_prompt_strings() -> list[str]:
    """The strings every TTS prompt is made of, besides the transcripts."""
    system = [tts_system_prompt("text"), RAP_SYSTEM_PROMPT, HUMMING_SYSTEM_PROMPT]
    roles = ["system", "human", "assistant"]
    return [f"system\n{s}" for s in system] + roles + [f"({tag})" for tag in TAGS]


def train_vocabulary(texts: list[str], out: Path, vocab_size: int = 4096) -> Path:
    """Train the BPE model on `texts` (normalised transcripts) and write it to `out` (.model)."""
    import sentencepiece

    sentences = [t for t in texts if t.strip()] + fixed_prompt_strings() * PROMPT_WEIGHT
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        character_coverage=1.0,
        byte_fallback=True,
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        user_defined_symbols=[BOT, EOT, "\n"],
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        max_sentencepiece_length=16,
        split_by_unicode_script=False,  # lets the Chinese system prompt merge across its punctuation
        split_by_number=False,
        num_threads=1,
        minloglevel=2,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.getvalue())
    return out
