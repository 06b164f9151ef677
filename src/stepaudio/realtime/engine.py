"""The shared models of voice chat: VAD, listener (tokenizer + ASR), responder (chat LM), speaker
(TTS). Loaded once and shared by every session (each session keeps its own streams and KV cache).

Which path a model takes follows from its parts, not from branches in the controller:
- `mini`: Whisper tiny.en tokenizes and transcribes the turn in one encoder pass, SmolLM2 answers
  the transcript, the mini TTS speaks;
- official: the dual tokenizer streams, Step-Audio-Chat reads the turn's audio tokens (and writes
  the transcript kept in the history), Step-Audio-TTS-3B speaks.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from stepaudio.audio.vad import SileroVAD
from stepaudio.lm.backends.local import LocalBackend
from stepaudio.lm.backends.options import LOCAL, EngineOptions
from stepaudio.models.store import MINI, resolve_model
from stepaudio.realtime.listen import Heard
from stepaudio.realtime.memory import release_memory
from stepaudio.realtime.respond import ChatResponder


class ListenStream(Protocol):
    def step(self, samples: np.ndarray) -> None: ...  # 16 kHz mono, as the user speaks
    def hear(self) -> Heard: ...  # everything so far (blocking; may be called from another thread)


class Listener(Protocol):
    def stream(self) -> ListenStream: ...


class Speaker(Protocol):
    """The part of `stepaudio.tts.TTS` a conversation uses."""

    sample_rate: int

    def stream(self, text: str, voice=None, tags=(), cancel=None, speed: float = 1.0) -> Iterator[np.ndarray]: ...


@dataclass
class ChatEngine:
    vad: SileroVAD
    listener: Listener
    responder: ChatResponder
    speaker: Speaker

    @classmethod
    def load(
        cls,
        model: str | Path = MINI,
        speaker: Speaker | None = None,
        engine: EngineOptions = LOCAL,
        tts_engine: EngineOptions = LOCAL,
    ) -> ChatEngine:
        """`mini` or a directory of official checkpoints; `speaker` replaces the model's own TTS
        (e.g. `PiperSpeaker` while the mini TTS is still training); `engine` runs the chat LM, `tts_engine`
        the official TTS LM. Mini answers greedily and short (a spoken answer; 4-bit on our engine on a
        CPU); official uses the release's sampling and answer length (2048 tokens)."""
        from stepaudio.lm.quantize import int4_supported, quantize_int4
        from stepaudio.lm.sampling import Sampling

        resolved = resolve_model(model)
        vad = SileroVAD.load(MINI)  # Silero serves both paths
        if resolved.kind == "mini":
            from stepaudio.lm.loaders import MINI_CHAT, load_lm
            from stepaudio.realtime.listen import WhisperListener

            lm = load_lm(MINI_CHAT, engine=engine)
            ours = isinstance(lm.backend, LocalBackend) and not engine.quantization
            if ours and int4_supported(str(lm.model.device)):
                quantize_int4(lm.model)
            listener = WhisperListener.load()
            # Greedy with a mild repetition penalty: without it SmolLM2 answers a follow-up question
            # ("How tall is it?") with its previous answer.
            sampling = Sampling(temperature=0.0, max_new_tokens=64, repetition_penalty=1.1)
            responder = ChatResponder(lm, sampling, reads_audio=False)
        else:
            import torch

            from stepaudio.device import pick_device
            from stepaudio.lm.loaders import load_lm
            from stepaudio.realtime.listen import StepAudioListener
            from stepaudio.realtime.respond import OFFICIAL_CONTEXT_TOKENS
            from stepaudio.tokenizer.dual import DualTokenizer

            lm = load_lm(resolved.require("chat"), torch.bfloat16, str(pick_device()), engine)
            listener = StepAudioListener(DualTokenizer.load(model), lm)
            responder = ChatResponder(lm, Sampling.official_chat(), reads_audio=True, max_len=OFFICIAL_CONTEXT_TOKENS)
        if speaker is None:
            from stepaudio.tts import TTS

            speaker = TTS.load(model=model, engine=tts_engine)
        release_memory()  # the loaders' temporaries (weights decoded, quantised) are free now
        return cls(vad, listener, responder, speaker)
