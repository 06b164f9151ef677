"""The speech decoder: interleaved dual-codebook tokens + a voice -> 22.05 kHz PCM, offline or streaming.

Offline, the flow turns all tokens into mel at once and HiFT voices it. Streaming re-runs the flow
on a growing window as tokens arrive (the official flow attends to the whole utterance, so frames
change a little as right context comes in): each run emits the mel frames that have at least
`lookahead_frames` of right context, cross-fades its first frames with the previous run's provisional
ones, and voices them with `vocoder_context_frames` of left context and the provisional frames as
right context; audio joins are cross-faded too. Noise comes from position-keyed tapes and the
harmonic source carries its phase across runs, so a stream that gets all tokens at once equals the
offline output exactly, and chunked streams differ only by the missing right context.

A voice is conditioned two ways: `voice` (ours: the conditioned 16 kHz prompt, its mel cut to the
span its tokens cover) and `voice_as_released` (the official `StepAudioTTS.preprocess_prompt_wav`:
the whole recording at its own rate, resampled as the release resamples, untrimmed and unnormalised).
The official flow runs in bfloat16 on a GPU as released (`to(device, flow_dtype)`), HiFT in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stepaudio.audio import mel_spectrogram, resample
from stepaudio.audio.decoder_mel import HOP_LENGTH, SAMPLE_RATE
from stepaudio.audio.sinc import resample_sinc
from stepaudio.decoder.checkpoint import load_model
from stepaudio.decoder.flow import FlowConfig, FlowModel
from stepaudio.decoder.hift import HiFT, HiFTConfig
from stepaudio.decoder.noise import NoiseTape
from stepaudio.decoder.official import load_official
from stepaudio.decoder.speaker import GE2E, CAMPPlus
from stepaudio.decoder.speaker import SAMPLE_RATE as SPEAKER_RATE
from stepaudio.errors import AudioError, TokenError
from stepaudio.speed import check_speed
from stepaudio.tokenizer.interleave import GROUP_SIZE


@dataclass(frozen=True)
class Voice:
    """What the flow is conditioned on: the prompt's tokens, its mel and its speaker embedding."""

    tokens: torch.Tensor  # [P_tok] audio ids 0..5119 (may be empty)
    mel: torch.Tensor  # [80, P] decoder mel of the prompt (empty iff tokens are)
    embedding: torch.Tensor  # [spk_embed_dim]

    def to(self, device: torch.device) -> Voice:
        return Voice(self.tokens.to(device), self.mel.to(device), self.embedding.to(device))


@dataclass(frozen=True)
class StreamSchedule:
    first_chunk_tokens: int = 25  # 0.6 s of tokens before the first audio
    growth: float = 2.0  # each later chunk this much larger ...
    max_chunk_tokens: int = 400  # ... up to this (9.6 s)
    context_tokens: int = 100  # tokens of left context the flow re-reads (2.4 s): bounds the re-run cost
    lookahead_frames: int = 8  # mel frames held back until more tokens arrive (93 ms)
    mel_crossfade_frames: int = 4
    vocoder_context_frames: int = 16
    audio_crossfade: int = 512  # samples

    def __post_init__(self):
        if self.first_chunk_tokens < 1 or self.growth < 1 or self.max_chunk_tokens < self.first_chunk_tokens:
            raise ValueError(f"bad stream schedule {self}")


def _ramp(n: int) -> torch.Tensor:
    """Raised-cosine weights 0 -> 1 over n points (both ends excluded)."""
    return 0.5 - 0.5 * torch.cos(math.pi * (torch.arange(n) + 1) / (n + 1))


class SpeechDecoder:
    sample_rate = SAMPLE_RATE

    def __init__(self, flow: FlowModel, hift: HiFT, speaker=None, seed: int = 0):
        self.flow, self.hift, self.speaker, self.seed = flow.eval(), hift.eval(), speaker, seed

    @property
    def device(self) -> torch.device:
        return next(self.flow.parameters()).device

    def to(self, device: torch.device | str, flow_dtype: torch.dtype | None = None) -> SpeechDecoder:
        """Run the flow and the vocoder there (voices and PCM stay on the CPU; the speaker encoder too);
        flow_dtype: the flow's weights and arithmetic (the release runs its flow in bfloat16 on a GPU,
        cosyvoice.py:44; HiFT stays float32, as the release feeds it `mel.float()`)."""
        self.flow.to(device, flow_dtype) if flow_dtype is not None else self.flow.to(device)
        self.hift.to(device)
        return self

    @classmethod
    def load(cls, model: str | Path = "mini") -> SpeechDecoder:
        """`mini` (our flow + HiFT, GE2E speakers), or official checkpoints (Step-Audio-TTS-3B's
        CosyVoice-300M-25Hz folder, CAMPPlus speakers)."""
        from stepaudio.models.store import resolve_model

        resolved = resolve_model(model)
        if resolved.kind == "mini":
            return cls.from_directory(resolved.require("decoder"), resolved.require("speaker"))
        return cls.from_official(resolved.require("tts") / "CosyVoice-300M-25Hz")

    @classmethod
    def from_official(cls, folder: Path) -> SpeechDecoder:
        """A `CosyVoice-300M-25Hz(-Music)` folder with CAMPPlus speaker embeddings."""
        flow, hift = load_official(folder)
        return cls(flow, hift, CAMPPlus(Path(folder) / "campplus.onnx"))

    @classmethod
    def from_directory(cls, directory: Path, speaker_weights: Path | None = None) -> SpeechDecoder:
        """Our own decoder (`flow.*`, `hift.*` as safetensors + JSON), e.g. mini, with GE2E speakers."""
        flow = load_model(FlowModel, FlowConfig, directory, "flow")
        hift = load_model(HiFT, HiFTConfig, directory, "hift")
        return cls(flow, hift, GE2E.from_resemblyzer(speaker_weights) if speaker_weights else None)

    def voice(
        self,
        samples: np.ndarray,
        sample_rate: int,
        tokens: torch.Tensor | np.ndarray,
        embedding: torch.Tensor | None = None,
    ) -> Voice:
        """A voice prompt from its audio and its tokens (as the tokenizer gave them for this audio);
        `embedding`: the speaker embedding of this audio when it was computed before (a cache). The mel
        is cut to the time its tokens cover (a tokenizer drops a last partial group): the regulator
        stretches the prompt's tokens over the prompt's frames."""
        return self._voice(samples, sample_rate, tokens, embedding, resample, cut_to_tokens=True)

    def voice_as_released(
        self,
        samples: np.ndarray,
        sample_rate: int,
        tokens: torch.Tensor | np.ndarray,
        embedding: torch.Tensor | None = None,
    ) -> Voice:
        """A voice prompt as the release conditions it (`StepAudioTTS.preprocess_prompt_wav`, tts.py:201-217 at
        stepfun-ai/Step-Audio a52b94d8): `samples` is the whole mono recording at its own `sample_rate`, as
        read from the file (untrimmed, not normalised). The prompt mel is that of the recording resampled
        to 22.05 kHz with the release's resampler (`resample_sinc`, torchaudio's), all of it: the flow
        stretches the prompt's tokens (made from the trimmed, normalised 16 kHz audio) over all its frames,
        as the release's does; the CAMPPlus embedding is that of the recording resampled to 16 kHz.
        `embedding`: computed before for this recording (a cache)."""
        return self._voice(samples, sample_rate, tokens, embedding, resample_sinc, cut_to_tokens=False)

    def _voice(self, samples, sample_rate, tokens, embedding, resampler, cut_to_tokens: bool) -> Voice:
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1 or len(samples) < sample_rate // 10:
            raise AudioError("a voice prompt needs at least 0.1 s of mono audio")
        if self.speaker is None and embedding is None:
            raise AudioError("this decoder has no speaker encoder: build it with one to use voice prompts")
        tokens = torch.as_tensor(np.array(tokens)).long().reshape(-1)
        self.flow.check_tokens(tokens)
        if len(tokens) == 0:
            raise TokenError("a voice prompt needs its tokens")
        mel = mel_spectrogram(resampler(samples, sample_rate, SAMPLE_RATE))
        if cut_to_tokens:
            mel = mel[:, : self.flow.config.mel_frames(len(tokens))]
        if embedding is None:
            embedding = self.speaker(resampler(samples, sample_rate, SPEAKER_RATE))
        elif embedding.shape != (self.flow.config.spk_embed_dim,):
            raise AudioError(
                f"speaker embedding of shape {tuple(embedding.shape)}, the flow wants {self.flow.config.spk_embed_dim}"
            )
        return Voice(tokens, mel, embedding)

    def no_voice(self) -> Voice:
        dim = self.flow.config.spk_embed_dim
        return Voice(torch.zeros(0, dtype=torch.long), torch.zeros(self.flow.config.output_size, 0), torch.zeros(dim))

    def stream(
        self, voice: Voice | None = None, schedule: StreamSchedule | None = None, speed: float = 1.0
    ) -> DecoderStream:
        """speed: speaking rate relative to the tokens' own (2 = twice as fast), MIN_SPEED..MAX_SPEED."""
        return DecoderStream(self, voice or self.no_voice(), schedule or StreamSchedule(), check_speed(speed))

    def decode(self, tokens, voice: Voice | None = None, speed: float = 1.0) -> tuple[np.ndarray, int]:
        """All tokens at once -> (float32 PCM, 22050): one flow call over every token, then HiFT over the
        whole mel (the release's `token_to_wav_offline`, cosyvoice.py:47-68)."""
        stream = self.stream(voice, speed=speed)
        stream.add(tokens)
        return stream.flush(), SAMPLE_RATE


class DecoderStream:
    """step(tokens) -> PCM ready so far (maybe empty); flush() -> the rest. One per utterance."""

    def __init__(self, decoder: SpeechDecoder, voice: Voice, schedule: StreamSchedule, speed: float):
        self.flow, self.hift, self.schedule, self.speed = decoder.flow, decoder.hift, schedule, speed
        # The state lives where the decoder runs; the noise tapes draw on the CPU (the same numbers anywhere).
        self.device = device = decoder.device
        self.voice = voice.to(device)
        seed, harmonics = decoder.seed, decoder.hift.config.nb_harmonics + 1
        self.prompt_noise = NoiseTape(seed, self.flow.config.output_size)(0, voice.mel.shape[1]).to(device)
        self.target_noise = NoiseTape(seed + 1, self.flow.config.output_size)
        self.source_noise = NoiseTape(seed + 2, harmonics)
        phases = (torch.rand(harmonics, generator=torch.Generator().manual_seed(seed + 3)) * 2 - 1) * math.pi
        self.phases = torch.cat([torch.zeros(1), phases[1:]]).to(device)  # the fundamental starts at phase 0
        self.tokens: list[int] = []
        self.next_run, self.chunk = schedule.first_chunk_tokens, schedule.first_chunk_tokens
        self.frames_done = 0  # mel frames voiced and emitted
        self.history = torch.zeros(self.flow.config.output_size, 0, device=device)  # final frames: vocoder context
        self.provisional: torch.Tensor | None = None  # previous run's frames from frames_done on
        self.audio_tail = torch.zeros(0, device=device)  # previous run's audio just past what it emitted
        self.cycles = torch.zeros(harmonics, device=device)  # source cycles before the next vocoder window
        self.finished = False

    def add(self, tokens) -> None:
        if self.finished:
            raise TokenError("this stream is flushed; start a new one for the next utterance")
        tokens = torch.as_tensor(np.array(tokens)).long().reshape(-1)
        self.flow.check_tokens(tokens)
        self.tokens.extend(tokens.tolist())

    def step(self, tokens) -> np.ndarray:
        self.add(tokens)
        if len(self.tokens) < self.next_run:
            return np.zeros(0, dtype=np.float32)
        self.next_run = len(self.tokens) + self.chunk
        self.chunk = min(int(self.chunk * self.schedule.growth), self.schedule.max_chunk_tokens)
        return self._run(final=False)

    def flush(self) -> np.ndarray:
        if self.finished:
            return np.zeros(0, dtype=np.float32)
        if not self.tokens:
            raise TokenError("no speech tokens to decode")
        out = self._run(final=True)
        self.finished = True
        return out

    @torch.inference_mode()
    def _run(self, final: bool) -> np.ndarray:
        s, config = self.schedule, self.flow.config
        n, done = len(self.tokens), self.frames_done
        frames = config.mel_frames(n, self.speed)
        end = frames if final else frames - s.lookahead_frames
        if end <= done and not final:
            return np.zeros(0, dtype=np.float32)
        # Flow window: up to context_tokens back, but never starting after the first frame still needed.
        # Windows start on a group boundary, where the interleaving starts over.
        start = max(0, n - s.context_tokens) // GROUP_SIZE * GROUP_SIZE
        while start > 0 and config.mel_frames(start, self.speed) > done:
            start -= GROUP_SIZE
        first = config.mel_frames(start, self.speed)
        noise = torch.cat([self.prompt_noise, self.target_noise(first, frames).to(self.device)], dim=1)
        v = self.voice
        window = torch.tensor(self.tokens[start:], dtype=torch.long, device=self.device)
        mel = self.flow.generate(window, v.tokens, v.mel, v.embedding, noise, frames=frames - first).float()
        new = mel[:, done - first :].clone()  # frames done .. frames
        if self.provisional is not None:
            k = min(s.mel_crossfade_frames, self.provisional.shape[1], new.shape[1])
            w = _ramp(k).to(new)
            new[:, :k] = self.provisional[:, :k] * (1 - w) + new[:, :k] * w
        end = max(end, done)
        # Vocoder window: left context from the final history, the new frames as they are now.
        voc_first = done - self.history.shape[1]
        audio, cycles = self._vocode(torch.cat([self.history, new], dim=1), voc_first)
        hop = HOP_LENGTH
        out = audio[(done - voc_first) * hop : (end - voc_first) * hop].clone()
        k = min(len(self.audio_tail), len(out))
        if k:
            w = _ramp(k).to(out)
            out[:k] = self.audio_tail[:k] * (1 - w) + out[:k] * w
        self.audio_tail = audio[(end - voc_first) * hop : (end - voc_first) * hop + s.audio_crossfade].clone()
        self.history = torch.cat([self.history, new[:, : end - done]], dim=1)[:, -s.vocoder_context_frames :]
        next_first = end - self.history.shape[1]
        if next_first > voc_first:
            self.cycles = cycles[:, (next_first - voc_first) * hop - 1]
        self.provisional = new[:, end - done :]
        self.frames_done = end
        return out.cpu().numpy()

    def _vocode(self, mel: torch.Tensor, first_frame: int) -> tuple[torch.Tensor, torch.Tensor]:
        """mel [80, T] starting at absolute frame first_frame -> (audio [T*256], source cycles [H+1, T*256])."""
        hop = HOP_LENGTH
        f0 = self.hift.f0_predictor(mel[None])
        noise = self.source_noise(first_frame * hop, (first_frame + mel.shape[1]) * hop).to(mel)
        excitation, cycles = self.hift.m_source(f0, noise[None], self.phases[None], self.cycles[None])
        return self.hift.decode(mel[None], excitation)[0], cycles[0]
