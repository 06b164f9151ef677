"""Speech decoder: dual-codebook tokens -> mel (flow matching) -> waveform (HiFT), with voice prompts."""

from stepaudio.decoder.flow import FlowConfig, FlowModel
from stepaudio.decoder.hift import HiFT, HiFTConfig
from stepaudio.decoder.speech_decoder import DecoderStream, SpeechDecoder, StreamSchedule, Voice

__all__ = ["DecoderStream", "FlowConfig", "FlowModel", "HiFT", "HiFTConfig", "SpeechDecoder", "StreamSchedule", "Voice"]
