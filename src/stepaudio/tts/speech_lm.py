"""The TTS language model: text + voice prompt -> audio indices, with the official sampling.

Two sources behind one class: the mini model (our Step1 network with a compact vocabulary whose audio
ids start at `audio_offset`) and Step-Audio-TTS-3B (official Step1 directory, audio ids from 65 536).
`generate` may only choose audio tokens or the end of turn, so nothing but speech can come out (the
pipeline bounds mini's length by the text's expected duration); `generate_as_released` is the
release's own call: any token, up to the model's 8192 positions.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stepaudio.errors import CheckpointError, ModelNotFound, OptionError
from stepaudio.lm.backends import Backend, Decoder
from stepaudio.lm.backends.local import LocalBackend, in_process
from stepaudio.lm.backends.options import LOCAL, EngineOptions
from stepaudio.lm.model import LMConfig, Transformer
from stepaudio.lm.sampling import Sampling
from stepaudio.lm.tokenizer import SentencePieceTokenizer, Tokenizer
from stepaudio.tokenizer.interleave import AUDIO_VOCAB
from stepaudio.tts.prompt import request_ids

MINI_FILES = ("lm.json", "lm.safetensors", "tokenizer.model", "tts.json")


@dataclass
class ReleasedCall:
    """What `generate_as_released` gives: the audio indices the release's flow would read, and how it ended."""

    tokens: list[int] = field(default_factory=list)  # audio indices 0..5119
    cut: bool = False  # the model's positions ran out before the end of turn (speech cut there, as in the release)
    not_speech: int = 0  # tokens that are no audio index (voiced as code 0, as the release's flow clamps them)
    cancelled: bool = False


@dataclass
class SpeechLM:
    backend: Backend  # our engine, or vLLM (Step-Audio-TTS-3B)
    tokenizer: Tokenizer
    names_speakers: bool  # the official system prompt names a registered voice; mini was trained without
    # the official LM speaks faster or slower for the speed tags; mini's does not (its corpus was read at rates
    # 0.85-1.2 only), so the pipeline renders them in the decoder
    follows_speed_tags: bool
    max_len: int = 4096  # positions of one generation session (prompt + speech)

    def __post_init__(self):
        offset, vocab_size = self.tokenizer.audio_offset, self.backend.config.vocab_size
        if offset + AUDIO_VOCAB > vocab_size:
            raise CheckpointError(f"the LM has {vocab_size} tokens, too few for audio ids {offset}..{offset + 5119}")
        local = isinstance(self.backend, LocalBackend)
        if local:
            self.model.requires_grad_(False)  # no autograd graphs (a grad-mode context cannot span yields)
        self.allowed = torch.zeros(vocab_size, dtype=torch.bool, device=self.model.device if local else "cpu")
        self.allowed[offset : offset + AUDIO_VOCAB] = True
        self.allowed[self.tokenizer.eos_id] = True
        self._sessions: queue.SimpleQueue[Decoder] = queue.SimpleQueue()  # idle decoders, prompt prefixes cached

    @property
    def model(self) -> Transformer:
        """The network in this process (our engine only)."""
        return in_process(self.backend, "the TTS LM")

    @classmethod
    def from_mini(cls, directory: Path, device: torch.device | str = "cpu") -> SpeechLM:
        """Our exported model: `lm.json`, `lm.safetensors`, `tokenizer.model`, `tts.json` (small: float32 anywhere)."""
        from safetensors.torch import load_file

        directory = Path(directory)
        missing = [name for name in MINI_FILES if not (directory / name).is_file()]
        if missing:
            raise ModelNotFound(f"{directory} lacks {', '.join(missing)} (written by `stepaudio train tts`)")
        config = LMConfig.load(directory / "lm.json")
        model = Transformer.from_state_dict(config, load_file(str(directory / "lm.safetensors")), torch.float32)
        model.to(device)
        offset = json.loads((directory / "tts.json").read_text())["audio_offset"]
        tokenizer = SentencePieceTokenizer(directory / "tokenizer.model", audio_offset=offset)
        return cls(
            LocalBackend(model), tokenizer, names_speakers=False, follows_speed_tags=False, max_len=config.max_seq_len
        )

    @classmethod
    def from_official(
        cls, directory: Path, device: torch.device | str = "cpu", engine: EngineOptions = LOCAL
    ) -> SpeechLM:
        """Step-Audio-TTS-3B's Step1 LM (bf16 weights; on our engine run in float32 on a CPU, in bfloat16
        on a GPU, or quantised as `engine` says; or on vLLM)."""
        from stepaudio.device import inference_dtype
        from stepaudio.lm.loaders import load_lm

        device = torch.device(device)
        lm = load_lm(directory, inference_dtype(device), str(device), engine)
        max_len = min(lm.config.max_seq_len, 8192)
        return cls(lm.backend, lm.tokenizer, names_speakers=True, follows_speed_tags=True, max_len=max_len)

    def prompt(
        self,
        text: str,
        tags: Sequence[str],
        prompt_text: str,
        prompt_tokens: Sequence[int],
        speaker: str | None,
        wide: bool = False,
    ) -> list[int]:
        """The request's ids: `tags` in front of `text` in the order given (wide: full-width parentheses)."""
        return request_ids(
            self.tokenizer, text, tags, prompt_text, prompt_tokens, speaker if self.names_speakers else None, wide
        )

    def generate(
        self,
        prompt: list[int],
        max_new_tokens: int,
        cancel: threading.Event | None = None,
        seed: int | None = None,
        min_new_tokens: int = 0,
        audio_only: bool = True,
    ) -> Iterator[int]:
        """Audio indices (0..5119) as they are sampled, until the end of turn (not before
        `min_new_tokens`) or the cap (at most the model's positions after the prompt); official sampling
        (temperature 0.7, top-k 50, the repetition-aware rule). audio_only=False: any token of the
        vocabulary may be chosen, as in the release (a text token comes out as its id minus the offset,
        negative)."""
        max_new_tokens = min(max_new_tokens, self.max_len - len(prompt))
        if max_new_tokens <= 0:
            raise OptionError(
                f"the text and the voice prompt take {len(prompt)} of the model's {self.max_len} positions, "
                "leaving none for speech: use a shorter voice prompt or shorter text"
            )
        sampling = Sampling.official_tts(
            max_new_tokens=max_new_tokens, min_new_tokens=min_new_tokens, stop_ids=(self.tokenizer.eos_id,), seed=seed
        )
        try:
            session = self._sessions.get_nowait()
        except queue.Empty:
            session = self.backend.decoder(self.max_len)
        try:
            offset = self.tokenizer.audio_offset
            for token in session.stream(prompt, sampling, cancel, self.allowed if audio_only else None):
                yield token - offset
        finally:
            self._sessions.put(session)  # one generation at a time per session; threads take their own

    def generate_as_released(
        self, prompt: list[int], cancel: threading.Event | None = None, seed: int | None = None
    ) -> ReleasedCall:
        """StepAudioTTS.__call__'s LM call (tts.py:102-109 at stepfun-ai/Step-Audio a52b94d8): the release's
        sampling (temperature 0.7, transformers' top-k 50, the repetition-aware rule) over the whole
        vocabulary, until the end of turn or `max_len` positions, prompt included (max_length=8192); no
        length floor, no cap of ours. As tts.py:109 does, the last token is dropped (the end of turn; when
        the positions run out, the last speech token) and every id becomes `id - 65536` clamped at 0 as the
        release's flow reads it (flow.py:159), so a text token is voiced as code 0; an id past the audio
        codes (the release's flow cannot embed it) is voiced so too."""
        call, tokens = ReleasedCall(), []
        for index in self.generate(prompt, self.max_len, cancel, seed, audio_only=False):
            tokens.append(index)
        if cancel is not None and cancel.is_set():
            return ReleasedCall(cancelled=True)
        call.cut = len(prompt) + len(tokens) >= self.max_len
        if call.cut:
            tokens = tokens[:-1]  # tts.py:109's [:, len(token_ids):-1] drops it, taking it for the end of turn
        call.not_speech = sum(not 0 <= t < AUDIO_VOCAB for t in tokens)
        call.tokens = [t if 0 <= t < AUDIO_VOCAB else 0 for t in tokens]
        return call
