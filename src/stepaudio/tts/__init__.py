"""Text-to-speech: `TTS.load("mini")` (or a directory of official checkpoints), then `synthesize`
or `stream` text in a registered voice or one cloned from a prompt wav and its transcript.

    from stepaudio.tts import TTS

    tts = TTS.load("mini")
    pcm, sample_rate = tts.synthesize("Hello there, how are you today?", tags=("快速1",))
"""

from stepaudio.tts.pipeline import TTS, expected_seconds
from stepaudio.tts.voices import VoiceRegistry

__all__ = ["TTS", "VoiceRegistry", "expected_seconds"]
