"""Text-to-speech: text (+ style tags, + a voice) -> 22.05 kHz speech.

Two ways to speak, one code path:
- as the release (the default for official weights, `stream` / `synthesize`): the whole text as written
  (not normalised, not split) in one LM call with the release's sampling and limits (any token, up to
  8192 positions), then one offline flow call (bfloat16 on a GPU, as released) and HiFT; the voice is
  conditioned as the release conditions it (prompt mel and CAMPPlus embedding from the whole recording at
  its own rate; `SpeechDecoder.voice_as_released`). This is official `StepAudioTTS.__call__`
  (tts.py:65-120 at stepfun-ai/Step-Audio a52b94d8).
- sentence by sentence (`stream_sentences`: `stepaudio tts --stream`, the real-time pipeline, and mini's
  default): each sentence gets the official TTS prompt with the voice's transcript and tokens as the
  example turn, and every token goes to a streaming speech decoder, so audio leaves while the LM is still
  speaking. For mini, the sentence is normalised and its speech bounded to half..twice its expected
  duration (fitted on the mini corpus); official weights get no such bound: only their own 8192 positions.
Style tags come as an argument or inline at the start of the text ("(高兴1)Hello", "（RAP）我踏上..."), as the
release takes them; a leading RAP or 哼唱 tag picks the official music vocoder (and the voice's music
prompt, e.g. `TingtingRAP`, where one is registered) and the music system prompt.
"""

from __future__ import annotations

import math
import re
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio import load_audio
from stepaudio.audio.io import AudioSource
from stepaudio.audio.sinc import resample_sinc
from stepaudio.decoder.speech_decoder import SpeechDecoder, Voice
from stepaudio.errors import OptionError
from stepaudio.lm.backends.options import LOCAL, EngineOptions
from stepaudio.lm.prompts import MUSIC_TAGS
from stepaudio.speed import check_speed
from stepaudio.tokenizer.input import SAMPLE_RATE as PROMPT_RATE
from stepaudio.tokenizer.interleave import AUDIO_TOKENS_PER_SECOND, GROUP_SIZE
from stepaudio.tts.prompt import CANTONESE_TAGS, split_tags, tagged_rate, tagged_text
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.text import guess_language, normalize, split_sentences
from stepaudio.tts.voices import (
    MAX_PROMPT_SECONDS,
    VoiceEntry,
    VoiceRegistry,
    check_transcript,
    condition_prompt,
    read_prompt,
)

# mini only (fitted on its corpus): speech longer than this times the expected duration is cut (no runaway)
MAX_DURATION_FACTOR = 2.0
# and the end of turn is not taken before this times the expected duration (as CosyVoice's LM floors its
# output length by the text's), so a model that stops early does not swallow the end of a sentence
MIN_DURATION_FACTOR = 0.5
MINI_DEFAULT_VOICE = "joe"
OFFICIAL_DEFAULT_VOICE = "Tingting"

# Seconds = a + b * letters (speed 1), fitted on the mini corpus (espeak-ng, Piper, Flite, Festival voices).
_DURATION = {"en": (0.56, 0.068), "zh": (0.28, 0.268), "yue": (0.34, 0.224)}
_SPEED = {"慢速2": 1.16, "慢速1": 1.1, "快速1": 0.9, "快速2": 0.83}  # duration factors measured on the corpus


def expected_seconds(text: str, language: str, tags: Sequence[str] = ()) -> float:
    """How long a normalised sentence takes to say at the tagged speed (a typical voice)."""
    intercept, per_letter = _DURATION.get(language, _DURATION["en"])
    letters = len(re.sub(r"[\W_]", "", text))
    seconds = intercept + per_letter * letters
    for tag in tags:
        seconds *= _SPEED.get(tag, 1.0)
    return seconds


def sentence_language(sentence: str, tags: Sequence[str]) -> str:
    if any(tag in CANTONESE_TAGS for tag in tags) and guess_language(sentence) == "zh":
        return "yue"
    return guess_language(sentence)


class SpeechNote(UserWarning):
    """What the release's call does without a word, said (`stepaudio tts` prints it on stderr)."""


class SpeechCut(SpeechNote):
    """The speech reached the LM's positions (8192 for Step-Audio-TTS-3B) before the end of turn, and was
    cut there as the release cuts it."""


@dataclass(frozen=True)
class PreparedVoice:
    """A voice ready for one decoder: the LM's example turn and the flow's conditioning."""

    transcript: str  # normalised (mini), as written (official, as the release reads it)
    tokens: np.ndarray  # prompt audio indices
    decoder_voice: Voice
    speaker: str | None  # the name the official system prompt gives a registered voice


class TTS:
    sample_rate = SpeechDecoder.sample_rate

    def __init__(
        self,
        lm: SpeechLM,
        decoder: SpeechDecoder,
        voices: VoiceRegistry,
        tokens_tag: str,
        default_voice: str,
        tokenizer: Callable[[], object],
        music_decoder: SpeechDecoder | None = None,
        as_released: bool = False,
    ):
        """tokenizer: returns the DualTokenizer matching the LM (loaded on first need: only new
        prompts need it, the built-in mini voices come with their tokens); tokens_tag names the tokens
        it makes (`official`, or `mini_tokens_tag()`), so the voices' caches are kept per tokenizer.
        as_released (official weights): `stream` is the release's call, voices are conditioned as the
        release conditions them, text is read as written, and no duration bound fitted on mini applies."""
        self.lm, self.decoder, self.voices, self.tokens_tag = lm, decoder, voices, tokens_tag
        self.music_decoder, self._tokenizer_factory, self._tokenizer = music_decoder, tokenizer, None
        self.default_voice, self.as_released = default_voice, as_released
        self._prepared: dict[tuple[str, int, int], PreparedVoice] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str | Path = "mini", device: str | None = "auto", engine: EngineOptions = LOCAL) -> TTS:
        """`mini`, or a directory of official checkpoints holding Step-Audio-TTS-3B (and, for new
        voice prompts, Step-Audio-Tokenizer); the LM and the decoders run on `device` (auto: a GPU
        when torch sees one), the tokenizer and the speaker encoder for new prompts on the CPU;
        `engine` runs the official TTS LM (ours, quantised or not, or vLLM)."""
        from stepaudio.device import inference_dtype, pick_device
        from stepaudio.models.store import resolve_model
        from stepaudio.tokenizer.dual import DualTokenizer, mini_tokens_tag

        resolved, where = resolve_model(model), pick_device(device)
        voices = VoiceRegistry.for_model(model)
        if resolved.kind == "mini":
            if engine.kind not in ("auto", "local") or engine.quantization:
                raise OptionError("the mini TTS LM runs on our engine only: drop --engine/--quantization")
            lm = SpeechLM.from_mini(resolved.require("tts_lm"), where)
            decoder = SpeechDecoder.load("mini").to(where)
            tag = mini_tokens_tag()
            return cls(lm, decoder, voices, tag, MINI_DEFAULT_VOICE, lambda: DualTokenizer.load("mini"))
        folder = resolved.require("tts")
        names = voices.names()
        default = OFFICIAL_DEFAULT_VOICE if OFFICIAL_DEFAULT_VOICE in names else (names[0] if names else "")
        dtype = inference_dtype(where)  # the release's flow: bfloat16 on a GPU (cosyvoice.py:44); float32 on a CPU
        return cls(
            SpeechLM.from_official(folder, where, engine),
            SpeechDecoder.from_official(folder / "CosyVoice-300M-25Hz").to(where, dtype),
            voices,
            "official",
            default,
            lambda: DualTokenizer.load(folder.parent),
            music_decoder=SpeechDecoder.from_official(folder / "CosyVoice-300M-25Hz-Music").to(where, dtype),
            as_released=True,
        )

    @property
    def engine(self) -> str:
        """Which engine speaks (/v1/audio/speech's X-Speech-Engine): `step-audio-tts` (official weights)
        or `mini-tts` (the mini TTS LM)."""
        return "step-audio-tts" if self.as_released else "mini-tts"

    # --- voices ---------------------------------------------------------------------------------

    def tokenizer(self):
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._tokenizer_factory()
            return self._tokenizer

    def prompt_tokens(self, samples16: np.ndarray) -> np.ndarray:
        """Speech tokens of a conditioned 16 kHz prompt."""
        return np.asarray(self.tokenizer().encode(samples16, PROMPT_RATE, prompt=True).interleaved)

    def _prepare(self, samples16: np.ndarray, transcript: str, tokens, embedding, decoder, speaker) -> PreparedVoice:
        voice = decoder.voice(samples16, PROMPT_RATE, tokens, embedding)
        return PreparedVoice(normalize(transcript), np.asarray(tokens), voice, speaker)

    def _released_tokens(self, recording: np.ndarray, rate: int) -> np.ndarray:
        """The prompt's tokens as the release makes them (`wav2token`, tokenizer.py:52-66): the recording
        at 16 kHz through the release's resampler, then the tokenizer's peak normalisation and prompt trim."""
        return self.prompt_tokens(resample_sinc(recording, rate, PROMPT_RATE))

    def prepare_voice(self, entry: VoiceEntry, decoder: SpeechDecoder) -> PreparedVoice:
        """A registered voice for a decoder: tokens and embedding from its cache, computed (and
        cached where the folder is writable) the first time."""
        key = (str(entry.wav), entry.wav.stat().st_mtime_ns, id(decoder))  # a re-added voice is new
        if key in self._prepared:
            return self._prepared[key]
        speaker = entry.name if entry.builtin else None
        if self.as_released:
            prepared = self._prepare_as_released(entry, decoder, speaker)
            self._prepared[key] = prepared
            return prepared
        samples = entry.samples()
        cache = entry.cache_file(self.tokens_tag if decoder is self.decoder else f"{self.tokens_tag}-music")
        if cache.is_file():
            stored = np.load(cache)
            tokens, embedding = stored["tokens"], torch.from_numpy(stored["embedding"])
        else:
            tokens = self.prompt_tokens(samples)
            embedding = decoder.voice(samples, PROMPT_RATE, tokens).embedding
            _save_cache(cache, tokens, embedding)
        prepared = self._prepare(samples, entry.transcript, tokens, embedding, decoder, speaker)
        self._prepared[key] = prepared
        return prepared

    def _prepare_as_released(self, entry: VoiceEntry, decoder: SpeechDecoder, speaker: str | None) -> PreparedVoice:
        """As `StepAudioTTS.register_speakers` (tts.py:122-143): the transcript as written, the recording's
        tokens, and its mel and embedding from the whole recording (the embedding by the common vocoder's
        CAMPPlus for every voice, RAP and humming included, as `preprocess_prompt_wav` uses it)."""
        recording, rate = entry.recording()
        cache = entry.cache_file(f"{self.tokens_tag}-as-released")
        if cache.is_file():
            stored = np.load(cache)
            tokens, embedding = stored["tokens"], torch.from_numpy(stored["embedding"])
        else:
            tokens = self._released_tokens(recording, rate)
            embedding = self.decoder.voice_as_released(recording, rate, tokens).embedding
            _save_cache(cache, tokens, embedding)
        voice = decoder.voice_as_released(recording, rate, tokens, embedding)
        return PreparedVoice(entry.transcript, np.asarray(tokens), voice, speaker)

    def clone_voice(self, prompt_wav: AudioSource, prompt_text: str, decoder: SpeechDecoder) -> PreparedVoice:
        """A voice from any prompt file and its exact transcript, for this request only."""
        if self.as_released:  # the release's clone_dict (tts.py:66-79): the transcript as written
            check_transcript(prompt_text)
            recording, rate = read_prompt(prompt_wav)
            tokens = self._released_tokens(recording, rate)
            embedding = self.decoder.voice_as_released(recording, rate, tokens).embedding
            voice = decoder.voice_as_released(recording, rate, tokens, embedding)
            return PreparedVoice(prompt_text, np.asarray(tokens), voice, None)
        samples, rate = load_audio(prompt_wav, max_seconds=MAX_PROMPT_SECONDS)
        samples = condition_prompt(samples, rate)
        tokens = self.prompt_tokens(samples)
        return self._prepare(samples, check_transcript(prompt_text), tokens, None, decoder, None)

    def _voice(self, voice, tags, prompt_wav, prompt_text) -> tuple[PreparedVoice, SpeechDecoder]:
        music = bool(tags) and tags[0] in MUSIC_TAGS and self.music_decoder is not None
        decoder = self.music_decoder if music else self.decoder
        if prompt_wav is not None or prompt_text is not None:
            if voice is not None:
                raise OptionError("give either a voice name or a prompt wav with its transcript, not both")
            if prompt_wav is None or prompt_text is None:
                raise OptionError("voice cloning needs both the prompt wav and its exact transcript")
            return self.clone_voice(prompt_wav, prompt_text, decoder), decoder
        name = voice or self.default_voice
        if not name:
            raise OptionError("this model has no built-in voice: give --voice NAME or a prompt wav and its transcript")
        entry = self.voices.get(name)
        if music and f"{name}{tags[0]}" in self.voices.names():  # the release's TingtingRAP / Tingting哼唱
            entry = self.voices.get(f"{name}{tags[0]}")
        return self.prepare_voice(entry, decoder), decoder

    # --- synthesis ------------------------------------------------------------------------------

    def stream(
        self,
        text: str,
        voice: str | None = None,
        tags: Sequence[str] = (),
        cancel: threading.Event | None = None,
        prompt_wav: AudioSource | None = None,
        prompt_text: str | None = None,
        seed: int | None = None,
        speed: float = 1.0,
    ) -> Iterator[np.ndarray]:
        """float32 mono chunks at `sample_rate`; stops early (between LM steps or decoder chunks) once
        `cancel` is set. Official weights: the release's call, the whole speech in one chunk when the LM
        and the flow are done (a `SpeechCut` warning when the model's positions ran out first); mini:
        sentence by sentence as `stream_sentences`. `tags` and the tags at the start of `text` are merged
        (`split_tags`) and never spoken. `speed` time-scales what the LM says in the decoder (any model); the
        speed tags ask the LM, or the decoder where the LM does not follow them (mini)."""
        return self._speak(text, voice, tags, cancel, prompt_wav, prompt_text, seed, speed, self.as_released)

    def stream_sentences(
        self,
        text: str,
        voice: str | None = None,
        tags: Sequence[str] = (),
        cancel: threading.Event | None = None,
        prompt_wav: AudioSource | None = None,
        prompt_text: str | None = None,
        seed: int | None = None,
        speed: float = 1.0,
    ) -> Iterator[np.ndarray]:
        """As `stream`, but sentence by sentence with any model, each streamed through the decoder as the LM
        speaks it (first audio after 0.6 s of speech): `stepaudio tts --stream` and the real-time pipeline."""
        return self._speak(text, voice, tags, cancel, prompt_wav, prompt_text, seed, speed, False)

    def _speak(self, text, voice, tags, cancel, prompt_wav, prompt_text, seed, speed, whole) -> Iterator[np.ndarray]:
        if not text or not text.strip():
            raise OptionError("no text to speak")
        written = text.strip()
        merged, body = split_tags(written, tags)
        if not body.strip():
            raise OptionError(f"no text to speak after the style tags {''.join(f'({t})' for t in merged)}")
        wide = written.startswith("（")  # tags written full-width go to the LM full-width, as in the release
        speed = check_speed(speed)
        if not self.lm.follows_speed_tags:  # the decoder renders them
            speed = tagged_rate(speed, merged)
        prepared, decoder = self._voice(voice, merged, prompt_wav, prompt_text)
        if whole:
            # the text as written when its tags are all inline (the release's input, byte for byte); tags
            # given apart are written in front of the text as the release's users write them
            request = written if not tags else tagged_text(body.strip(), merged, wide)
            return self._release_call(request, prepared, decoder, cancel, seed, speed)
        return self._sentences(split_sentences(body.strip()), merged, wide, prepared, decoder, cancel, seed, speed)

    def _release_call(self, request, prepared, decoder, cancel, seed, speed) -> Iterator[np.ndarray]:
        """tts.py:96-120: one LM call over the whole request, one offline flow call, HiFT."""
        prompt = self.lm.prompt(request, (), prepared.transcript, prepared.tokens.tolist(), prepared.speaker)
        call = self.lm.generate_as_released(prompt, cancel, seed)
        if call.cancelled or not call.tokens:
            return
        if call.cut:
            warnings.warn(
                SpeechCut(
                    f"the speech filled the model's {self.lm.max_len} positions before its end and was cut "
                    f"there after {len(call.tokens) / AUDIO_TOKENS_PER_SECOND:.1f} s, as the release cuts it; "
                    "speak long text sentence by sentence (stepaudio tts --stream)"
                ),
                stacklevel=2,
            )
        if call.not_speech:
            warnings.warn(
                SpeechNote(
                    f"the LM said {call.not_speech} of {len(call.tokens)} tokens that are no speech; they are "
                    "voiced as speech code 0, as the release's flow voices them"
                ),
                stacklevel=2,
            )
        yield decoder.decode(call.tokens, prepared.decoder_voice, speed)[0]

    def _sentences(self, sentences, tags, wide, prepared, decoder, cancel, seed, speed) -> Iterator[np.ndarray]:
        for sentence in sentences:
            language = sentence_language(sentence, tags)
            spoken = sentence if self.as_released else normalize(sentence, language)  # the release: as written
            if not re.search(r"\w", spoken):
                continue  # punctuation only
            prompt = self.lm.prompt(
                spoken, tags, prepared.transcript, prepared.tokens.tolist(), prepared.speaker, wide=wide
            )
            if self.as_released:  # no bound fitted on mini: the model's own positions end a runaway
                cap, floor = self.lm.max_len, 0
            else:
                expected_tokens = expected_seconds(spoken, language, tags) * AUDIO_TOKENS_PER_SECOND
                cap = int(MAX_DURATION_FACTOR * expected_tokens)
                floor = GROUP_SIZE * math.ceil(MIN_DURATION_FACTOR * expected_tokens / GROUP_SIZE)  # whole groups
            stream = decoder.stream(prepared.decoder_voice, speed=speed)
            spoke = False
            for token in self.lm.generate(prompt, cap, cancel, seed, min_new_tokens=floor):
                spoke = True
                chunk = stream.step([token])
                if len(chunk):
                    yield chunk
                if cancel is not None and cancel.is_set():
                    return
            if cancel is not None and cancel.is_set():
                return
            if spoke:
                yield stream.flush()

    def synthesize(
        self,
        text: str,
        voice: str | None = None,
        tags: Sequence[str] = (),
        prompt_wav: AudioSource | None = None,
        prompt_text: str | None = None,
        seed: int | None = None,
        speed: float = 1.0,
    ) -> tuple[np.ndarray, int]:
        """The whole speech of `text` as (float32 mono PCM, sample_rate), made as `stream` makes it."""
        chunks = list(
            self.stream(text, voice, tags, prompt_wav=prompt_wav, prompt_text=prompt_text, seed=seed, speed=speed)
        )
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return pcm.astype(np.float32, copy=False), self.sample_rate


def _save_cache(path, tokens: np.ndarray, embedding: torch.Tensor) -> None:
    try:
        np.savez(path, tokens=tokens, embedding=embedding.float().numpy())
    except OSError:
        pass  # a read-only folder (an installed package): computed again next time
