"""Reading, validating and conditioning audio: the one door every waveform comes through.

Samples are float32 numpy arrays in [-1, 1]. Everything read from outside (paths, bytes, uploads)
is validated here so that later stages can trust what they get.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from stepaudio.errors import AudioError, OptionError
from stepaudio.outputs import atomic_output, check_output, write_failure

AudioSource = str | os.PathLike | bytes | bytearray | BinaryIO

MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
DEFAULT_MAX_SECONDS = 600.0
MAX_SECONDS_ENV = "STEPAUDIO_MAX_AUDIO_SECONDS"
SUPPORTED_FORMATS = "wav, flac, ogg and mp3"
# what each writable extension holds: 16-bit PCM where the format has a choice (Vorbis and MP3 have none)
WRITE_SUBTYPES = {".wav": "PCM_16", ".flac": "PCM_16", ".ogg": None, ".mp3": None}

# Leading bytes of containers libsndfile cannot read, so the error can name what the user gave us.
_UNSUPPORTED_MAGIC = (
    (4, b"ftyp", "MP4/M4A"),
    (0, b"\x1aE\xdf\xa3", "WebM/Matroska"),
    (0, b"#!AMR", "AMR"),
    (0, b"\x30\x26\xb2\x75", "WMA/ASF"),
    (0, b"\xff\xf1", "AAC (ADTS)"),
    (0, b"\xff\xf9", "AAC (ADTS)"),
)


def max_audio_seconds() -> float:
    """The length cap for loaded audio: $STEPAUDIO_MAX_AUDIO_SECONDS, else 600 s."""
    raw = os.environ.get(MAX_SECONDS_ENV)
    if raw is None:
        return DEFAULT_MAX_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise AudioError(f"{MAX_SECONDS_ENV}={raw!r} is not a number of seconds") from None
    if not value > 0:
        raise AudioError(f"{MAX_SECONDS_ENV} must be positive, got {raw!r}")
    return value


def check_sample_rate(sample_rate: int) -> int:
    if not isinstance(sample_rate, (int, np.integer)) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(
            f"sample rate {sample_rate!r} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz; "
            "the file header is probably corrupt, or the rate was given in kHz"
        )
    return int(sample_rate)


def check_audio(samples: np.ndarray, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Validate a waveform from anywhere; return it as float32. Raises AudioError with the fix."""
    check_sample_rate(sample_rate)
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise AudioError(f"audio must be 1-D (samples) or 2-D (samples, channels), got shape {samples.shape}")
    if samples.size == 0:
        raise AudioError("the audio is empty (0 samples); record or choose a file with sound in it")
    if not np.issubdtype(samples.dtype, np.floating):
        raise AudioError(f"audio samples must be floating point in [-1, 1], got dtype {samples.dtype}")
    if not np.isfinite(samples).all():
        bad = int((~np.isfinite(samples)).sum())
        raise AudioError(f"the audio contains {bad} NaN or Inf samples; the file is corrupt or was written wrongly")
    limit = max_audio_seconds() if max_seconds is None else max_seconds
    seconds = samples.shape[0] / sample_rate
    if seconds > limit:
        raise AudioError(
            f"the audio is {seconds:.1f} s long, over the {limit:g} s limit; "
            f"cut it into shorter pieces or raise {MAX_SECONDS_ENV}"
        )
    return samples.astype(np.float32, copy=False)


def _read_head(source: AudioSource) -> tuple[BinaryIO, bytes, str]:
    """Open the source as a seekable binary file; return it, its first bytes and a name for errors."""
    if isinstance(source, (bytes, bytearray)):
        if len(source) == 0:
            raise AudioError("the audio data is empty (0 bytes)")
        return io.BytesIO(bytes(source)), bytes(source[:16]), "audio bytes"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            raise AudioError(f"{path} is a folder, not an audio file")
        if not path.is_file():
            raise AudioError(f"no such audio file: {path}")
        if path.stat().st_size == 0:
            raise AudioError(f"{path} is empty (0 bytes)")
        handle = open(path, "rb")
        head = handle.read(16)
        handle.seek(0)
        return handle, head, str(path)
    if not source.seekable() or source.tell() != 0:  # a pipe, or audio after other data: soundfile seeks from 0
        source = io.BytesIO(source.read())
    head = source.read(16)
    source.seek(0)
    if not head:
        raise AudioError("the audio stream is empty (0 bytes)")
    return source, head, "audio stream"


def _describe_failure(head: bytes, name: str, error: Exception) -> AudioError:
    for offset, magic, container in _UNSUPPORTED_MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return AudioError(
                f"{name} is {container}, which stepaudio cannot read; it reads {SUPPORTED_FORMATS}. "
                "Convert it first, e.g. `ffmpeg -i input output.wav`"
            )
    # libsndfile's own message names the file object it was given (`<_io.BytesIO object at 0x...>`):
    # keep only its reason, which tells the user something and leaks no address.
    reason = getattr(error, "error_string", None) or str(error)
    return AudioError(f"{name} is not readable audio ({SUPPORTED_FORMATS} expected) or is corrupt: {reason}")


def load_audio(
    source: AudioSource, sample_rate: int | None = None, *, max_seconds: float | None = None
) -> tuple[np.ndarray, int]:
    """Read wav/flac/ogg/mp3 from a path, bytes or a binary file; mix to mono; resample if asked.

    Returns (samples float32 [n], sample_rate). The length cap is checked from the header before
    decoding, so a huge file is refused without reading it.
    """
    handle, head, name = _read_head(source)
    limit = max_audio_seconds() if max_seconds is None else max_seconds
    try:
        with sf.SoundFile(handle) as sound:
            rate = check_sample_rate(sound.samplerate)
            if sound.frames > limit * rate:
                raise AudioError(
                    f"{name} is {sound.frames / rate:.1f} s long, over the {limit:g} s limit; "
                    f"cut it into shorter pieces or raise {MAX_SECONDS_ENV}"
                )
            samples = sound.read(dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, EOFError) as error:
        raise _describe_failure(head, name, error) from error
    finally:
        if isinstance(source, (str, os.PathLike)):
            handle.close()
    if samples.shape[0] == 0:
        raise AudioError(f"{name} holds no samples (a valid header with zero-length audio)")
    samples = to_mono(check_audio(samples, rate, limit))
    if sample_rate is not None and sample_rate != rate:
        samples, rate = resample(samples, rate, sample_rate), sample_rate
    return samples, rate


def check_output_path(path: str | os.PathLike, inputs: Iterable[str | os.PathLike | None] = ()) -> Path:
    """`path` if audio can be written there: a known extension, a writable folder, none of `inputs`
    (`check_output`). Commands call it before any model loads, so a typo in -o costs nothing."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_SUBTYPES:
        kind = f"as {path.suffix}" if path.suffix else "without an extension"
        raise OptionError(f"{path}: cannot write audio {kind}; name a .wav, .flac, .ogg or .mp3 file")
    return check_output(path, inputs)


@contextmanager
def open_audio_writer(
    path: str | os.PathLike, sample_rate: int, channels: int = 1, *, growing: bool = False
) -> Iterator[sf.SoundFile]:
    """A file to write float32 chunks to as they come (16-bit PCM in wav and flac; the format follows the
    extension), moved into place when complete (`atomic_output`); `growing` writes in place instead, so
    the file can be played while it grows."""
    path = check_output_path(path)
    subtype = WRITE_SUBTYPES[path.suffix.lower()]
    with nullcontext(path) if growing else atomic_output(path) as target:
        try:
            with sf.SoundFile(target, "w", sample_rate, channels, subtype=subtype) as out:
                yield out
        except sf.LibsndfileError as error:  # libsndfile reports a full disk as a "System error."
            raise write_failure(path, error.error_string) from error


def save_audio(path: str | os.PathLike, samples: np.ndarray, sample_rate: int) -> None:
    """Write samples [n] or [n, channels]; the format follows the file extension (.wav, .flac, .ogg, .mp3)."""
    samples = check_audio(samples, sample_rate, max_seconds=math.inf)
    with open_audio_writer(path, sample_rate, 1 if samples.ndim == 1 else samples.shape[1]) as out:
        out.write(np.clip(samples, -1.0, 1.0))


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a (samples, channels) array; 1-D input is returned as it is."""
    return samples if samples.ndim == 1 else samples.mean(axis=1, dtype=np.float32)


def resample(samples: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Resample up or down with soxr (high quality); the official code could only go down."""
    check_sample_rate(from_rate)
    check_sample_rate(to_rate)
    if from_rate == to_rate:
        return samples
    return soxr.resample(samples, from_rate, to_rate, quality="HQ").astype(np.float32, copy=False)


def peak_normalize(samples: np.ndarray, peak: float = 0.999, floor: float = 0.01) -> np.ndarray:
    """Scale so the loudest sample is `peak`; near-silence (max below `floor`) is not blown up."""
    return (samples / max(float(np.abs(samples).max(initial=0.0)), floor) * peak).astype(np.float32)


def _nonsilent_span(samples: np.ndarray, top_db: float, frame_length: int, hop_length: int) -> tuple[int, int]:
    """First and one-past-last sample of frames whose RMS is within top_db of the loudest frame.

    Same framing as librosa.effects.trim (centred frames, zero padding), which the official code used.
    """
    padded = np.pad(samples.astype(np.float64), frame_length // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, frame_length)[::hop_length]
    power = np.mean(frames**2, axis=1)
    amin = 1e-10
    db = 10.0 * np.log10(np.maximum(power, amin)) - 10.0 * np.log10(max(power.max(initial=0.0), amin))
    loud = np.flatnonzero(db > -top_db)
    if loud.size == 0:
        return 0, 0
    return int(loud[0] * hop_length), min(len(samples), int((loud[-1] + 1) * hop_length))


def trim_silence(
    samples: np.ndarray,
    sample_rate: int,
    *,
    top_db: float = 20.0,
    keep_before: float = 0.05,
    keep_after: float = 0.22,
    unit: int = 240,
) -> np.ndarray:
    """The official prompt trim: cut silence, keep 50 ms before / 220 ms after the speech.

    The speech span is rounded up to whole `unit`-sample blocks, then the kept margins are added;
    missing samples are zero-padded, so the result length is always ceil(span/unit)*unit + margins.
    """
    start, end = _nonsilent_span(samples, top_db, frame_length=512, hop_length=128)
    out_len = int(math.ceil((end - start) / unit) * unit + (keep_before + keep_after) * sample_rate)
    start -= int(keep_before * sample_rate)
    head = samples[start:] if start > 0 else np.pad(samples, (-start, 0))
    out = head[:out_len] if out_len < len(head) else np.pad(head, (0, out_len - len(head)))
    return out.astype(np.float32, copy=False)
