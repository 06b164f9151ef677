"""Text-to-speech: text (+ style tags, + a voice) -> 22.05 kHz speech, sentence by sentence.

For each sentence: normalise it, build the official TTS prompt with the voice's transcript and
tokens as the example turn, sample speech tokens from the LM (official sampling, between half and
twice the sentence's expected duration), and hand every token to a streaming speech decoder conditioned on
the same voice, so audio leaves while the LM is still speaking. Style tags come as an argument or
inline at the start of the text ("(高兴1)Hello", "（RAP）我踏上..."), as the release takes them; a
leading RAP or 哼唱 tag picks the official music vocoder (and the voice's music prompt, e.g.
`TingtingRAP`, where one is registered) and the music system prompt.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio import load_audio
from stepaudio.audio.io import AudioSource
from stepaudio.decoder.speech_decoder import SpeechDecoder, Voice, check_speed
from stepaudio.errors import OptionError
from stepaudio.lm.prompts import MUSIC_TAGS
from stepaudio.tokenizer.input import SAMPLE_RATE as PROMPT_RATE
from stepaudio.tokenizer.interleave import GROUP_SECONDS, GROUP_SIZE
from stepaudio.tts.prompt import CANTONESE_TAGS, split_tags, tagged_rate
from stepaudio.tts.speech_lm import SpeechLM
from stepaudio.tts.text import guess_language, normalize, split_sentences
from stepaudio.tts.voices import MAX_PROMPT_SECONDS, VoiceEntry, VoiceRegistry, check_transcript, condition_prompt

TOKENS_PER_SECOND = GROUP_SIZE / GROUP_SECONDS
MAX_DURATION_FACTOR = 2.0  # speech longer than this times the expected duration is cut (no runaway)
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


@dataclass(frozen=True)
class PreparedVoice:
    """A voice ready for one decoder: the LM's example turn and the flow's conditioning."""

    transcript: str  # normalised
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
    ):
        """tokenizer: returns the DualTokenizer matching the LM (loaded on first need: only new
        prompts need it, the built-in mini voices come with their tokens); tokens_tag names the tokens
        it makes (`official`, or `mini_tokens_tag()`), so the voices' caches are kept per tokenizer."""
        self.lm, self.decoder, self.voices, self.tokens_tag = lm, decoder, voices, tokens_tag
        self.music_decoder, self._tokenizer_factory, self._tokenizer = music_decoder, tokenizer, None
        self.default_voice = default_voice
        self._prepared: dict[tuple[str, int, int], PreparedVoice] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model: str | Path = "mini", device: str | None = "auto") -> TTS:
        """`mini`, or a directory of official checkpoints holding Step-Audio-TTS-3B (and, for new
        voice prompts, Step-Audio-Tokenizer); the LM and the decoders run on `device` (auto: a GPU
        when torch sees one), the tokenizer and the speaker encoder for new prompts on the CPU."""
        from stepaudio.device import pick_device
        from stepaudio.models.store import resolve_model
        from stepaudio.tokenizer.dual import DualTokenizer, mini_tokens_tag

        resolved, where = resolve_model(model), pick_device(device)
        voices = VoiceRegistry.for_model(model)
        if resolved.kind == "mini":
            lm = SpeechLM.from_mini(resolved.require("tts_lm"), where)
            decoder = SpeechDecoder.load("mini").to(where)
            tag = mini_tokens_tag()
            return cls(lm, decoder, voices, tag, MINI_DEFAULT_VOICE, lambda: DualTokenizer.load("mini"))
        folder = resolved.require("tts")
        names = voices.names()
        default = OFFICIAL_DEFAULT_VOICE if OFFICIAL_DEFAULT_VOICE in names else (names[0] if names else "")
        return cls(
            SpeechLM.from_official(folder, where),
            SpeechDecoder.from_official(folder / "CosyVoice-300M-25Hz").to(where),
            voices,
            "official",
            default,
            lambda: DualTokenizer.load(folder.parent),
            music_decoder=SpeechDecoder.from_official(folder / "CosyVoice-300M-25Hz-Music").to(where),
        )

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

    def prepare_voice(self, entry: VoiceEntry, decoder: SpeechDecoder) -> PreparedVoice:
        """A registered voice for a decoder: tokens and embedding from its cache, computed (and
        cached where the folder is writable) the first time."""
        key = (str(entry.wav), entry.wav.stat().st_mtime_ns, id(decoder))  # a re-added voice is new
        if key in self._prepared:
            return self._prepared[key]
        samples = entry.samples()
        cache = entry.cache_file(self.tokens_tag if decoder is self.decoder else f"{self.tokens_tag}-music")
        if cache.is_file():
            stored = np.load(cache)
            tokens, embedding = stored["tokens"], torch.from_numpy(stored["embedding"])
        else:
            tokens = self.prompt_tokens(samples)
            embedding = decoder.voice(samples, PROMPT_RATE, tokens).embedding
            try:
                np.savez(cache, tokens=tokens, embedding=embedding.numpy())
            except OSError:
                pass  # a read-only folder (an installed package): computed again next time
        speaker = entry.name if entry.builtin else None
        prepared = self._prepare(samples, entry.transcript, tokens, embedding, decoder, speaker)
        self._prepared[key] = prepared
        return prepared

    def clone_voice(self, prompt_wav: AudioSource, prompt_text: str, decoder: SpeechDecoder) -> PreparedVoice:
        """A voice from any prompt file and its exact transcript, for this request only."""
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
        """float32 mono chunks at `sample_rate`, sentence by sentence, as the decoder makes them;
        stops early (between LM steps or decoder chunks) once `cancel` is set. `tags` and the tags at the
        start of `text` are merged (`split_tags`) and never spoken. `speed` time-scales what the LM says in
        the decoder (any model); the speed tags ask the LM, or the decoder where the LM does not follow
        them (mini)."""
        if not text or not text.strip():
            raise OptionError("no text to speak")
        tags, body = split_tags(text.strip(), tags)
        if not body.strip():
            raise OptionError(f"no text to speak after the style tags {''.join(f'({t})' for t in tags)}")
        wide = text.strip().startswith("（")  # tags written full-width go to the LM full-width, as in the release
        speed = check_speed(speed)
        if not self.lm.follows_speed_tags:  # the decoder renders them
            speed = tagged_rate(speed, tags)
        prepared, decoder = self._voice(voice, tags, prompt_wav, prompt_text)
        return self._stream(split_sentences(body.strip()), tags, wide, prepared, decoder, cancel, seed, speed)

    def _stream(self, sentences, tags, wide, prepared, decoder, cancel, seed, speed) -> Iterator[np.ndarray]:
        for sentence in sentences:
            language = sentence_language(sentence, tags)
            spoken = normalize(sentence, language)
            if not re.search(r"\w", spoken):
                continue  # punctuation only
            prompt = self.lm.prompt(
                spoken, tags, prepared.transcript, prepared.tokens.tolist(), prepared.speaker, wide=wide
            )
            expected_tokens = expected_seconds(spoken, language, tags) * TOKENS_PER_SECOND
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
        """The whole speech of `text` as (float32 mono PCM, sample_rate)."""
        chunks = list(
            self.stream(text, voice, tags, prompt_wav=prompt_wav, prompt_text=prompt_text, seed=seed, speed=speed)
        )
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
        return pcm.astype(np.float32, copy=False), self.sample_rate
