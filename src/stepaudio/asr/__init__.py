"""Speech recognition: Whisper in torch, transcribing as faster-whisper does (greedy)."""

from stepaudio.asr.transcribe import DecodingOptions, Segment, Transcriber, Transcript, WhisperTokenizer
from stepaudio.asr.whisper import EncoderOutput, Whisper, WhisperConfig, encode_audio, load_whisper

__all__ = [
    "DecodingOptions",
    "EncoderOutput",
    "Segment",
    "Transcriber",
    "Transcript",
    "Whisper",
    "WhisperConfig",
    "WhisperTokenizer",
    "encode_audio",
    "load_whisper",
]
