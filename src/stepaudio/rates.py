"""The sample rate every model that listens reads, written once. A module with no imports, so corpus
tools and option parsers can use it without loading `stepaudio.audio` (which loads torch)."""

# Whisper, Silero VAD, the Paraformer and S3 tokenizers, the speaker encoders; every corpus file.
SAMPLE_RATE = 16_000
