"""Transcription with the torch Whisper, decoding as faster-whisper 1.2.1 does with `beam_size=1`.

We restate faster-whisper's `WhisperModel.transcribe` defaults, except that we decode greedily
(faster-whisper's default is a beam of 5):
- features: log-mel of the whole audio (+160 zero samples), normalised once; 30-s windows of it,
  zero-padded, from `seek`;
- prompt: `<|startofprev|>` + up to 223 tokens of the previous windows' text (condition on
  previous text), then `<|startoftranscript|>` (an English-only model has no language or task
  token); timestamps are predicted (`without_timestamps=False`), and the window advances to the
  last complete timestamp pair, as in faster-whisper;
- logits rules, as CTranslate2 applies them: non-speech symbols and special tokens suppressed at
  every step; a blank (" ") or `<|endoftext|>` suppressed at the first step; Whisper's timestamp
  rules (pairs, non-decreasing, first timestamp at most 1 s, a timestamp forced when their total
  probability beats every text token); at most 224 new tokens;
- temperature fallback: when the text compresses too well (zlib ratio > 2.4, a repetition loop)
  or its mean log-probability is below -1, decode again by sampling 5 candidates at 0.2, 0.4, ...
  1.0 (our sampling draws from torch's generator, seeded, so those results differ from
  CTranslate2's); a window with no-speech probability > 0.6 and low log-probability is skipped.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from stepaudio.asr.whisper import (
    ENCODER_STRIDE,
    WINDOW_FRAMES,
    EncoderOutput,
    Whisper,
    audio_mel,
    encode_audio,
    load_whisper,
    mel_window,
)
from stepaudio.audio.whisper_mel import FRAMES_PER_SECOND
from stepaudio.errors import CheckpointError, ModelNotFound

SECONDS_PER_TIMESTAMP = 0.02  # one timestamp token per encoder frame
MULTILINGUAL_VOCAB = 51865  # multilingual Whisper vocabularies have this many tokens or more; .en ones 51864

# Symbols Whisper should not emit (speaker tags, music notes, brackets): their first token is
# suppressed, alone and after a space; hyphens and quotes stay allowed inside words.
_NON_SPEECH_SYMBOLS = list('"#()*+/:;<=>@[\\]^_`{|}~「」『』') + (
    "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪".split()
)
_MUSIC_SYMBOLS = set("♩♪♫♬♭♮♯")  # multi-token in UTF-8: suppress their first token anyway


class WhisperTokenizer:
    """The BPE text tokenizer (tokenizer.json, via `tokenizers`) and the special token ids.

    Timestamp tokens (<|0.00|> .. <|30.00|>) follow <|notimestamps|> in the model's vocabulary
    but are not in tokenizer.json."""

    def __init__(self, path: str | Path):
        import tokenizers

        self.bpe = tokenizers.Tokenizer.from_file(str(path))
        special = {}
        for name in ("endoftext", "startoftranscript", "translate", "transcribe", "startoflm", "startofprev"):
            special[name] = self._id(f"<|{name}|>")
        self.eot, self.sot = special["endoftext"], special["startoftranscript"]
        self.sot_prev = special["startofprev"]
        self.no_speech = self.bpe.token_to_id("<|nospeech|>") or self._id("<|nocaptions|>")
        self.no_timestamps = self._id("<|notimestamps|>")
        self.timestamp_begin = self.no_timestamps + 1
        blocked = [
            special[name] for name in ("transcribe", "translate", "startoftranscript", "startofprev", "startoflm")
        ]
        self.suppress = sorted(set(self._non_speech_tokens() + blocked + [self.no_speech]))
        self.suppress_at_start = [*self.encode(" "), self.eot]

    def _id(self, token: str) -> int:
        index = self.bpe.token_to_id(token)
        if index is None:
            raise CheckpointError(f"the Whisper tokenizer has no {token} token")
        return index

    def _non_speech_tokens(self) -> list[int]:
        tokens = {self.encode(" -")[0], self.encode(" '")[0]}
        for symbol in _NON_SPEECH_SYMBOLS + sorted(_MUSIC_SYMBOLS):
            for ids in (self.encode(symbol), self.encode(" " + symbol)):
                if len(ids) == 1 or symbol in _MUSIC_SYMBOLS:
                    tokens.add(ids[0])
        return sorted(tokens)

    def encode(self, text: str) -> list[int]:
        return self.bpe.encode(text, add_special_tokens=False).ids

    def decode(self, tokens: list[int]) -> str:
        """The text of the text tokens (special and timestamp tokens dropped)."""
        return self.bpe.decode([token for token in tokens if token < self.eot])


@dataclass(frozen=True)
class DecodingOptions:
    """faster-whisper 1.2.1's transcription defaults, with greedy search."""

    without_timestamps: bool = False
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    best_of: int = 5  # candidates sampled at each temperature above 0
    compression_ratio_threshold: float | None = 2.4
    log_prob_threshold: float | None = -1.0
    no_speech_threshold: float | None = 0.6
    condition_on_previous_text: bool = True
    prompt_reset_on_temperature: float = 0.5
    max_initial_timestamp: float = 1.0  # seconds
    max_new_tokens: int = 224  # CTranslate2: half the decoder context
    seed: int = 0  # of the sampling generator (temperature fallback only)


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[int]  # without <|endoftext|>
    sum_logprob: float  # including <|endoftext|>

    @property
    def avg_logprob(self) -> float:
        return self.sum_logprob / (len(self.tokens) + 1)


@dataclass(frozen=True)
class Segment:
    start: float  # seconds
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float


@dataclass(frozen=True)
class Transcript:
    segments: list[Segment] = field(default_factory=list)
    duration: float = 0.0  # seconds of audio

    @property
    def text(self) -> str:
        return "".join(segment.text for segment in self.segments).strip()


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


class _LogitsRules:
    """Which tokens may come next: suppressed tokens and Whisper's timestamp rules, in
    CTranslate2's order (suppressions first, then the timestamp rules that look at them)."""

    def __init__(self, tokenizer: WhisperTokenizer, options: DecodingOptions, timestamps: bool):
        self.tokenizer, self.timestamps = tokenizer, timestamps
        self.max_initial = tokenizer.timestamp_begin + round(options.max_initial_timestamp / SECONDS_PER_TIMESTAMP)
        self.suppress = torch.tensor(tokenizer.suppress)
        self.suppress_at_start = torch.tensor(tokenizer.suppress_at_start)

    def __call__(self, logits: torch.Tensor, generated: torch.Tensor) -> torch.Tensor:
        """logits [B, V] of step `generated.shape[1]` (generated [B, step]) -> masked logits."""
        step = generated.shape[1]
        blocked = torch.zeros_like(logits, dtype=torch.bool)
        blocked[:, self.suppress] = True
        if step == 0:
            blocked[:, self.suppress_at_start] = True
        if self.timestamps:
            for row in range(logits.shape[0]):
                self._timestamp_rules(blocked[row], generated[row].tolist(), logits[row])
        return logits.masked_fill(blocked, -torch.inf)

    def _timestamp_rules(self, blocked: torch.Tensor, sequence: list[int], logits: torch.Tensor) -> None:
        begin, eot = self.tokenizer.timestamp_begin, self.tokenizer.eot
        blocked[self.tokenizer.no_timestamps] = True
        if not sequence:  # start with a timestamp, no later than max_initial_timestamp
            blocked[:begin] = True
            blocked[self.max_initial + 1 :] = True
            return
        last = sequence[-1]
        if last >= begin:
            penultimate = sequence[-2] if len(sequence) > 1 else last
            if penultimate >= begin:  # a closed pair: text (or the end) must follow
                blocked[begin:] = True
                return
            blocked[:eot] = True  # an open pair: close it (or end) with a timestamp >= the last
            blocked[begin:last] = True
        else:
            previous = [token for token in sequence if token >= begin]
            if previous:  # timestamps never go back
                blocked[begin : previous[-1] + 1] = True
        log_probs = logits.masked_fill(blocked, -torch.inf).log_softmax(-1)
        if log_probs[begin:].logsumexp(-1) > log_probs[:begin].max():
            blocked[:begin] = True


class Transcriber:
    """Whisper ASR: `encode(samples)` (shared with the semantic tokenizer), then `transcribe`."""

    def __init__(self, model: Whisper, tokenizer: WhisperTokenizer, options: DecodingOptions | None = None):
        if model.config.vocab_size >= MULTILINGUAL_VOCAB:
            raise CheckpointError("this is a multilingual Whisper; only English-only (.en) models are supported")
        self.model, self.tokenizer = model, tokenizer
        self.options = options or DecodingOptions()

    @classmethod
    def load(cls, model: str | Path = "mini", options: DecodingOptions | None = None) -> Transcriber:
        """From a model name (`mini`) or a CTranslate2 Whisper folder (model.bin + tokenizer.json)."""
        from stepaudio.models import resolve_model

        folder = Path(model)
        if not (folder / "model.bin").is_file():
            if str(model) != "mini":
                raise ModelNotFound(f"{model} is neither 'mini' nor a CTranslate2 Whisper folder with model.bin")
            folder = resolve_model("mini").require("whisper")
        return cls(load_whisper(folder), WhisperTokenizer(folder / "tokenizer.json"), options)

    def encode(self, samples: np.ndarray | torch.Tensor) -> EncoderOutput:
        """16 kHz mono float samples -> one encoder pass (50 Hz and pooled 16.67 Hz frames)."""
        return encode_audio(self.model, samples)

    @torch.inference_mode()
    def transcribe(self, audio: np.ndarray | torch.Tensor | EncoderOutput) -> Transcript:
        """16 kHz mono float samples, or their `encode` output (whose windows are reused where a
        decoding window starts on the same 30-s grid; always for audio up to 30 s)."""
        encoded = audio if isinstance(audio, EncoderOutput) else None
        mel = encoded.mel if encoded is not None else audio_mel(audio, self.model.config.n_mels)
        options, tokenizer = self.options, self.tokenizer
        content = mel.shape[1] - 1
        seek, all_tokens, prompt_reset_since, segments = 0, [], 0, []
        generator = torch.Generator().manual_seed(options.seed)
        while seek < content:
            size = min(WINDOW_FRAMES, content - seek)
            if encoded is not None and seek % WINDOW_FRAMES == 0:
                audio_features = encoded.windows[seek // WINDOW_FRAMES][None]
            else:
                audio_features = self.model.encoder(mel_window(mel, seek, seek + size)[None])
            prompt = self._prompt(all_tokens[prompt_reset_since:])
            result, no_speech_prob, temperature = self._decode_with_fallback(audio_features, prompt, generator)
            text = tokenizer.decode(result.tokens).strip()
            ratio = compression_ratio(text)
            if (
                options.no_speech_threshold is not None
                and no_speech_prob > options.no_speech_threshold
                and not (options.log_prob_threshold is not None and result.avg_logprob > options.log_prob_threshold)
            ):
                seek += size
                continue
            offset = seek / FRAMES_PER_SECOND
            pieces, seek = self._split_by_timestamps(result.tokens, seek, size)
            for start, end, tokens in pieces:
                text = tokenizer.decode(tokens)
                if start == end or not text.strip():
                    continue
                all_tokens.extend(tokens)
                segments.append(
                    Segment(
                        offset + start,
                        offset + end,
                        text,
                        tokens,
                        temperature,
                        result.avg_logprob,
                        ratio,
                        no_speech_prob,
                    )
                )
            if not options.condition_on_previous_text or temperature > options.prompt_reset_on_temperature:
                prompt_reset_since = len(all_tokens)
        return Transcript(segments, content / FRAMES_PER_SECOND)

    def _prompt(self, previous: list[int]) -> list[int]:
        max_previous = self.model.config.text_positions // 2 - 1
        prompt = [self.tokenizer.sot_prev, *previous[-max_previous:]] if previous else []
        prompt.append(self.tokenizer.sot)
        if self.options.without_timestamps:
            prompt.append(self.tokenizer.no_timestamps)
        return prompt

    def _split_by_timestamps(self, tokens: list[int], seek: int, size: int) -> tuple[list[tuple], int]:
        """Cut a window's tokens into (start s, end s, tokens) pieces at timestamp pairs, and the
        next seek: the last complete pair if the window ends mid-sentence, else the window's end."""
        begin = self.tokenizer.timestamp_begin
        is_time = [token >= begin for token in tokens]
        ends_single = len(tokens) >= 2 and not is_time[-2] and is_time[-1]
        cuts = [i for i in range(1, len(tokens)) if is_time[i] and is_time[i - 1]]
        if not cuts:
            times = [token - begin for token in tokens if token >= begin]
            end = times[-1] * SECONDS_PER_TIMESTAMP if times and times[-1] > 0 else size / FRAMES_PER_SECOND
            return [(0.0, end, tokens)], seek + size
        if ends_single:
            cuts.append(len(tokens))
        pieces, last = [], 0
        for cut in cuts:
            piece = tokens[last:cut]
            start, end = ((piece[i] - begin) * SECONDS_PER_TIMESTAMP for i in (0, -1))
            pieces.append((start, end, piece))
            last = cut
        if ends_single:
            return pieces, seek + size
        return pieces, seek + (tokens[last - 1] - begin) * ENCODER_STRIDE

    def _decode_with_fallback(
        self, audio_features: torch.Tensor, prompt: list[int], generator: torch.Generator
    ) -> tuple[Hypothesis, float, float]:
        """The first temperature whose result passes the checks, else the best result seen."""
        options = self.options
        results, passed = [], []
        for temperature in options.temperatures:
            hypothesis, no_speech_prob = self._generate(audio_features, prompt, temperature, generator)
            results.append((hypothesis, no_speech_prob))
            ratio = compression_ratio(self.tokenizer.decode(hypothesis.tokens).strip())
            too_repetitive = options.compression_ratio_threshold is not None and (
                ratio > options.compression_ratio_threshold
            )
            if not too_repetitive:
                passed.append((hypothesis, no_speech_prob))
            too_unsure = options.log_prob_threshold is not None and hypothesis.avg_logprob < options.log_prob_threshold
            silent = options.no_speech_threshold is not None and no_speech_prob > options.no_speech_threshold
            if not too_repetitive and not too_unsure or too_unsure and silent:
                return hypothesis, no_speech_prob, temperature
        hypothesis, no_speech_prob = max(passed or results, key=lambda result: result[0].avg_logprob)
        return hypothesis, no_speech_prob, options.temperatures[-1]

    def _generate(
        self, audio_features: torch.Tensor, prompt: list[int], temperature: float, generator: torch.Generator
    ) -> tuple[Hypothesis, float]:
        """Greedy (temperature 0) or best-of-N sampled decoding of one window; also the
        probability of no speech at <|startoftranscript|>."""
        decoder, tokenizer, options = self.model.decoder, self.tokenizer, self.options
        batch = 1 if temperature == 0 else options.best_of
        state = decoder.start(audio_features.expand(batch, -1, -1))
        rules = _LogitsRules(tokenizer, options, prompt[-1] != tokenizer.no_timestamps)
        hidden = decoder(torch.tensor([prompt]).expand(batch, -1), state, offset=0)
        sot_index = prompt.index(tokenizer.sot)
        no_speech_prob = decoder.logits(hidden[0, sot_index]).softmax(-1)[tokenizer.no_speech].item()
        logits = decoder.logits(hidden[:, -1])  # [B, V]
        max_new = min(options.max_new_tokens, decoder.config.text_positions - len(prompt) + 1)
        generated = torch.zeros(batch, 0, dtype=torch.long)
        sum_logprob = torch.zeros(batch)
        finished = torch.zeros(batch, dtype=torch.bool)
        for step in range(max_new):
            log_probs = rules(logits, generated).log_softmax(-1)
            if temperature == 0:
                token = log_probs.argmax(-1)
            else:
                # Inverse-CDF sampling: one random number per row (multinomial draws far more).
                cdf = (log_probs / temperature).softmax(-1).cumsum(-1)  # [B, V]
                draw = torch.rand(batch, 1, generator=generator) * cdf[:, -1:]
                token = torch.searchsorted(cdf, draw)[:, 0].clamp(max=cdf.shape[1] - 1)
            token = token.masked_fill(finished, tokenizer.eot)
            sum_logprob += log_probs.gather(1, token[:, None])[:, 0].masked_fill(finished, 0.0)
            generated = torch.cat([generated, token[:, None]], dim=1)
            finished |= token == tokenizer.eot
            if finished.all() or step + 1 == max_new:
                break
            logits = decoder.logits(decoder(token[:, None], state, offset=len(prompt) + step)[:, -1])
        hypotheses = []
        for row in range(batch):
            tokens = [token for token in generated[row].tolist() if token != tokenizer.eot]
            hypotheses.append(Hypothesis(tokens, sum_logprob[row].item()))
        # CTranslate2 ranks candidates by the length-normalised sum of log-probabilities.
        best = max(hypotheses, key=lambda h: h.sum_logprob / max(len(h.tokens), 1))
        return best, no_speech_prob
