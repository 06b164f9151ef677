"""Speech recognition: Whisper in torch, transcribing as faster-whisper does."""
