"""`stepaudio train tts`: the mini TTS LM, a small Step1 model (square-root ALiBi, GQA, SwiGLU)
trained on the corpus in the official TTS prompt format, loss on the audio tokens and the end token,
plus the attention guide that teaches it to read the text (`stepaudio.train.attention_guide`), and
optionally random speech tokens in its input (`TTSObjective`). A run can start from an exported model
(`init`): fine-tuning keeps that model's text vocabulary.

The run directory holds the text vocabulary (trained first, `tokenizer.model`), the checkpoint and
the log; the export directory gets what `stepaudio.tts` loads: `tokenizer.model`, `lm.json`,
`lm.safetensors` (float16) and `tts.json` (the audio id offset).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stepaudio.decoder.checkpoint import save_model
from stepaudio.lm.model import LMConfig, Transformer
from stepaudio.lm.tokenizer import SentencePieceTokenizer
from stepaudio.tokenizer.interleave import AUDIO_VOCAB
from stepaudio.train.attention_guide import AttentionGuide
from stepaudio.train.data.manifest import read_split
from stepaudio.train.loop import TrainOptions, train
from stepaudio.train.token_noise import replace_at_random
from stepaudio.train.tts_data import IGNORE, TTSDataset, collate_tts
from stepaudio.train.tts_vocab import train_vocabulary
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.text import normalize

TEXT_VOCAB = 4096
MINI_TTS = dict(hidden_size=256, intermediate_size=704, num_layers=6, num_heads=4, num_kv_heads=2)


class TTSObjective(nn.Module):
    """Cross-entropy of the next token where a label is given (the head runs only there), plus
    `guide_weight` x the attention guide's loss (no guide at weight 0).

    speech_corruption: the input's speech tokens (not the targets) are replaced by random ones at a rate
    drawn per example from [0, speech_corruption]. Taught on true speech, the LM predicts the next token
    from the last ones (the codes of neighbouring 40 ms change little) and hardly from the text
    (`bench/tts_text_use.py`), then drifts once it hears its own guesses; noisy speech makes the text
    worth reading, as the pre-net dropout of Tacotron 2 (Shen et al., 2018) does for its decoder."""

    def __init__(self, model: Transformer, guide_weight: float = 1.0, speech_corruption: float = 0.0):
        super().__init__()
        self.model, self.guide_weight, self.speech_corruption = model, guide_weight, speech_corruption
        self.guide = AttentionGuide(model) if guide_weight else None

    def forward(self, batch: dict) -> tuple[torch.Tensor, dict]:
        inputs = batch["ids"][:, :-1]
        if self.speech_corruption:
            vocab = self.model.config.vocab_size  # the speech tokens are the last AUDIO_VOCAB ids (mini_config)
            inputs = replace_at_random(inputs, vocab - AUDIO_VOCAB, vocab, self.speech_corruption)
        hidden = self.model.hidden_states(inputs)
        labels = batch["labels"][:, 1:]
        scored = labels != IGNORE
        logits, targets = self.model.lm_head(hidden[scored]), labels[scored]
        loss = F.cross_entropy(logits, targets)
        with torch.no_grad():  # top-1 accuracy, ties counted as right: max is ~4x faster than argmax on bfloat16
            right = logits.gather(-1, targets[:, None]).squeeze(-1) == logits.max(-1).values
        parts = {"cross_entropy": loss.detach(), "accuracy": right.float().mean()}
        if self.guide is not None:
            guide = self.guide.loss(batch["spans"])
            loss, parts["guide"] = loss + self.guide_weight * guide, guide.detach()
        return loss, parts


def export_tts(model: Transformer, tokenizer_file: Path, audio_offset: int, directory: Path) -> None:
    # float16 on disk halves the packaged size; the pipeline runs the model in float32
    save_model(model, model.config, directory, "lm", torch.float16)
    (directory / "tts.json").write_text(json.dumps({"audio_offset": audio_offset}, indent=2) + "\n")
    if tokenizer_file.resolve() != (directory / "tokenizer.model").resolve():
        (directory / "tokenizer.model").write_bytes(tokenizer_file.read_bytes())


def mini_config(audio_offset: int, **overrides) -> LMConfig:
    return LMConfig(
        **{
            "vocab_size": audio_offset + AUDIO_VOCAB,
            "position": "sqrt_alibi",
            "max_seq_len": 2048,
            **MINI_TTS,
            **overrides,
        }
    )


def fresh_model(config: LMConfig) -> Transformer:
    """Small initial weights: a deep narrow model starts stable."""
    model = Transformer(config)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() == 2:
                param.normal_(0, 0.02)
    return model


def train_tts(
    manifest: Path,
    options: TrainOptions,
    sizes: dict | None = None,
    export_dir: Path | None = None,
    text_vocab: int = TEXT_VOCAB,
    max_seconds: float = 10.0,
    guide_weight: float = 1.0,
    speech_corruption: float = 0.0,
    init: Path | None = None,
    word_times: bool = True,
) -> int:
    """init: an exported TTS LM to start from (its config and text vocabulary; not `sizes`, `text_vocab`);
    word_times: the guide follows the manifest's word times where it has them (False: an even pace)."""
    out = Path(options.out)
    tokenizer_file = out / "tokenizer.model"
    if init is not None:
        initial = SpeechLM.from_mini(init)  # every file there, or a clear error
        # SpeechLM freezes its model for inference; training needs the gradients back
        model, text_vocab = initial.model.requires_grad_(True), initial.tokenizer.audio_offset
        if not tokenizer_file.is_file():
            out.mkdir(parents=True, exist_ok=True)
            tokenizer_file.write_bytes((Path(init) / "tokenizer.model").read_bytes())
    else:
        model = fresh_model(mini_config(text_vocab, **(sizes or {})))
        if not tokenizer_file.is_file():  # trained once per run, so --resume keeps the same ids
            texts = [normalize(u.text, u.language) for u in read_split(manifest, "train")]
            train_vocabulary(texts, tokenizer_file, text_vocab)
    tokenizer = SentencePieceTokenizer(tokenizer_file, audio_offset=text_vocab)
    dataset = TTSDataset(manifest, tokenizer, max_seconds=max_seconds, seed=options.seed, word_times=word_times)
    return train(
        TTSObjective(model, guide_weight, speech_corruption),
        dataset,
        collate_tts,
        options,
        lambda: export_tts(model, tokenizer_file, text_vocab, export_dir or out),
    )
