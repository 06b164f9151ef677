"""Audio front end: loading and conditioning waveforms, and every feature the models read."""

from stepaudio.audio.decoder_mel import mel_spectrogram
from stepaudio.audio.fbank import Cmvn, ParaformerFrontend, kaldi_fbank, lfr
from stepaudio.audio.io import (
    check_audio,
    check_output_path,
    load_audio,
    open_audio_writer,
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
    "check_output_path",
    "kaldi_fbank",
    "lfr",
    "load_audio",
    "log10_mel",
    "log_mel_spectrogram",
    "mel_spectrogram",
    "normalize_log_mel",
    "open_audio_writer",
    "peak_normalize",
    "resample",
    "save_audio",
    "to_mono",
    "trim_silence",
]
