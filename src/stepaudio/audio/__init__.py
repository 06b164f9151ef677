"""Audio front end: loading and conditioning waveforms, and every feature the models read."""

from stepaudio.audio.decoder_mel import mel_spectrogram
from stepaudio.audio.fbank import Cmvn, ParaformerFrontend, kaldi_fbank, lfr
from stepaudio.audio.io import (
    check_audio,
    load_audio,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
    trim_silence,
)
from stepaudio.audio.whisper_mel import (
    LogMelStream,
    log10_mel,
    log_mel_spectrogram,
    normalize_log_mel,
)

__all__ = [
    "Cmvn",
    "LogMelStream",
    "ParaformerFrontend",
    "check_audio",
    "kaldi_fbank",
    "lfr",
    "load_audio",
    "log10_mel",
    "log_mel_spectrogram",
    "mel_spectrogram",
    "normalize_log_mel",
    "peak_normalize",
    "resample",
    "save_audio",
    "to_mono",
    "trim_silence",
]
