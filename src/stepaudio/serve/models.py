"""The models one server process runs, loaded once and shared by every request and session.

HTTP routes reach the TTS, ASR and chat models through one worker thread each (`ModelWorker`);
real-time sessions come from the `RealtimeBackend` over the shared engine, which is safe to use
from many sessions at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepaudio.serve.realtime import RealtimeBackend
from stepaudio.serve.workers import ModelWorker

# TTS style tags of Step-Audio-TTS-3B, by group, for the page's pickers (see the official prompts).
STYLE_TAGS = {
    "emotion": ["高兴1", "高兴2", "生气1", "生气2", "悲伤1", "撒娇1"],
    "language": ["中文", "英文", "韩语", "日语", "四川话", "粤语", "广东话"],
    "speed": ["慢速1", "慢速2", "快速1", "快速2"],
    "music": ["RAP", "哼唱"],
}


@dataclass
class Models:
    name: str  # what --model said: shown by /v1/models and in sessions
    tts: Any  # stepaudio.tts.TTS
    asr: Any  # stepaudio.asr.Transcriber
    chat: Any  # stepaudio.lm.loaders.LanguageModel
    realtime: RealtimeBackend
    tts_worker: ModelWorker = field(default_factory=lambda: ModelWorker("tts"))
    asr_worker: ModelWorker = field(default_factory=lambda: ModelWorker("asr"))
    chat_worker: ModelWorker = field(default_factory=lambda: ModelWorker("chat"))

    @classmethod
    def load(cls, model: str = "mini") -> Models:
        """Load everything `stepaudio serve --model` asks for; a missing part fails here, at start,
        with the error that says what to install."""
        from stepaudio.asr import Transcriber
        from stepaudio.lm.loaders import MINI_CHAT, load_lm
        from stepaudio.lm.quantize import int4_supported, quantize_int4
        from stepaudio.realtime.engine import ChatEngine
        from stepaudio.tts import TTS

        chat = load_lm(MINI_CHAT if model == "mini" else Path(model) / "Step-Audio-Chat")
        if int4_supported(chat.model.device):
            quantize_int4(chat.model)
        engine = ChatEngine.load(model)
        return cls(model, TTS.load(model), Transcriber.load(model), chat, RealtimeBackend.from_engine(engine))

    def close(self) -> None:
        for worker in (self.tts_worker, self.asr_worker, self.chat_worker):
            worker.close()
