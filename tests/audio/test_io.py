import io
import struct

import librosa
import numpy as np
import pytest
import soundfile as sf

from conftest import speechlike, tone
from stepaudio.audio import (
    check_output_path,
    load_audio,
    peak_normalize,
    resample,
    save_audio,
    to_mono,
    trim_silence,
)
from stepaudio.audio.io import MAX_SECONDS_ENV, check_audio
from stepaudio.errors import AudioError, OptionError


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype=subtype)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG", "MP3"])
def test_load_every_supported_format_from_bytes_and_path(fmt, tmp_path):
    original = tone(1.0, 16000)
    data = encode(original, 16000, fmt)
    samples, rate = load_audio(data)
    assert rate == 16000
    # Lossy codecs may add a little padding; the tone must survive.
    assert abs(len(samples) - len(original)) < 0.1 * 16000
    spectrum = np.abs(np.fft.rfft(samples[:16000] if len(samples) >= 16000 else samples))
    assert abs(np.argmax(spectrum) * 16000 / (2 * (len(spectrum) - 1)) - 440) < 5
    path = tmp_path / f"clip.{fmt.lower()}"
    path.write_bytes(data)
    from_path, _ = load_audio(path)
    np.testing.assert_array_equal(from_path, samples)
    with open(path, "rb") as handle:
        from_handle, _ = load_audio(handle)
    np.testing.assert_array_equal(from_handle, samples)


def test_real_speech_loads(speech_path):
    samples, rate = load_audio(speech_path)
    assert rate == 16000 and samples.dtype == np.float32 and samples.ndim == 1
    assert 1.0 < len(samples) / rate < 10.0 and 0.05 < np.abs(samples).max() <= 1.0


def test_stereo_is_mixed_to_mono():
    left, right = tone(0.5, 16000, 440), tone(0.5, 16000, 1000)
    samples, _ = load_audio(encode(np.stack([left, right], axis=1), 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(samples, (left + right) / 2, atol=1e-6)
    np.testing.assert_allclose(to_mono(np.stack([left, right], axis=1)), (left + right) / 2, atol=1e-6)


@pytest.mark.parametrize("src,dst", [(44100, 16000), (8000, 16000), (16000, 22050), (22050, 16000)])
def test_resample_keeps_duration_and_pitch(src, dst):
    samples = tone(1.0, src, 300)
    out = resample(samples, src, dst)
    assert abs(len(out) - dst) <= 1
    spectrum = np.abs(np.fft.rfft(out))
    assert abs(np.argmax(spectrum) * dst / (2 * (len(spectrum) - 1)) - 300) < 2


def test_load_resamples_when_asked():
    samples, rate = load_audio(encode(tone(1.0, 48000), 48000, "WAV"), 16000)
    assert rate == 16000 and abs(len(samples) - 16000) <= 1


def test_peak_normalize():
    x = tone(0.1, 16000, amplitude=0.25)
    assert np.isclose(np.abs(peak_normalize(x)).max(), 0.999, atol=1e-6)
    quiet = tone(0.1, 16000, amplitude=0.001)
    # Near-silence is scaled by 1/0.01 at most, as in the official code: noise is not blown up.
    assert np.isclose(np.abs(peak_normalize(quiet)).max(), 0.001 / 0.01 * 0.999, atol=1e-6)


def official_trim(audio, sr, keep_left_time=0.05, keep_right_time=0.22, hop_size=240):
    """The official Step-Audio prompt trim, restated on librosa as the reference."""
    _, index = librosa.effects.trim(audio, top_db=20, frame_length=512, hop_length=128)
    num_frames = int(np.ceil((index[1] - index[0]) / hop_size))
    start = index[0] - int(keep_left_time * sr)
    out = audio[start:] if start > 0 else np.pad(audio, (-start, 0))
    out_len = int(num_frames * hop_size + (keep_left_time + keep_right_time) * sr)
    return out[:out_len] if out_len < len(out) else np.pad(out, (0, out_len - len(out)))


@pytest.mark.parametrize("lead,tail", [(0.5, 0.8), (0.0, 0.0), (0.02, 1.5), (1.2, 0.01)])
def test_trim_matches_official(lead, tail):
    rate = 16000
    voice = speechlike(1.3, rate, seed=3)
    x = np.concatenate([np.zeros(int(lead * rate)), voice, np.zeros(int(tail * rate))]).astype(np.float32)
    x += 1e-4 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32)
    ours = trim_silence(x, rate)
    np.testing.assert_array_equal(ours, official_trim(x, rate))
    assert (len(ours) - int(0.27 * rate)) % 240 == 0  # speech span in whole 240-sample units + margins


def test_trim_real_speech(speech_path):
    samples, rate = load_audio(speech_path)
    np.testing.assert_array_equal(trim_silence(samples, rate), official_trim(samples, rate))


def test_save_and_reload(tmp_path):
    x = tone(0.5, 22050)
    save_audio(tmp_path / "out.wav", x, 22050)
    y, rate = load_audio(tmp_path / "out.wav")
    assert rate == 22050
    np.testing.assert_allclose(y, x, atol=1 / 32768 + 1e-6)


@pytest.mark.parametrize("suffix", [".flac", ".ogg", ".MP3"])
def test_save_every_writable_format(tmp_path, suffix):
    x = tone(0.5, 22050)
    save_audio(tmp_path / f"out{suffix}", x, 22050)
    y, rate = load_audio(tmp_path / f"out{suffix}")
    assert rate == 22050 and abs(len(y) - len(x)) < 0.05 * len(x)  # the lossy codecs pad a little
    assert abs(np.sqrt(np.mean(y**2)) / np.sqrt(np.mean(x**2)) - 1) < 0.1  # the tone, not silence or noise


def test_save_stereo(tmp_path):
    x = np.stack([tone(0.5, 16000), np.zeros(8000, np.float32)], axis=1)
    save_audio(tmp_path / "two.wav", x, 16000)
    assert sf.info(tmp_path / "two.wav").channels == 2


@pytest.mark.parametrize(
    "name,message",
    [("out.xyz", "cannot write audio as .xyz"), ("out", "without an extension"), ("missing/out.wav", "does not exist")],
)
def test_bad_output_paths_are_refused_before_writing(tmp_path, name, message):
    with pytest.raises(OptionError, match=message):
        save_audio(tmp_path / name, tone(0.1, 16000), 16000)
    assert list(tmp_path.iterdir()) == []


def test_an_output_path_must_name_a_file(tmp_path):
    (tmp_path / "folder.wav").mkdir()
    with pytest.raises(OptionError, match="is a folder"):
        check_output_path(tmp_path / "folder.wav")
    assert check_output_path(tmp_path / "fine.ogg") == tmp_path / "fine.ogg"


# Bad input: every case gets an AudioError whose message says what is wrong.


def wav_header(rate: int, data: bytes = b"\x00\x00" * 100) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "empty"),
        (wav_header(16000, b""), "no samples"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt garbage", "not readable audio"),
        (np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "not readable audio"),
        (wav_header(16000)[:30], "not readable audio"),
        (b"\x00\x00\x00\x20ftypM4A " + b"\x00" * 200, "MP4/M4A"),
        (b"\x1aE\xdf\xa3" + b"\x00" * 200, "WebM"),
        (wav_header(1), "sample rate 1 Hz"),
        (wav_header(4_000_000), "sample rate 4000000 Hz"),
    ],
)
def test_bad_bytes_are_refused_with_a_clear_message(data, message):
    with pytest.raises(AudioError, match=message):
        load_audio(data)


def test_nan_and_inf_samples_are_refused():
    x = tone(0.1, 16000)
    x[10], x[20] = np.nan, np.inf
    with pytest.raises(AudioError, match="2 NaN or Inf samples"):
        load_audio(encode(x, 16000, "WAV", "FLOAT"))


def test_too_long_is_refused_before_decoding(monkeypatch):
    data = encode(np.zeros(16000 * 3, dtype=np.float32), 16000, "WAV")
    with pytest.raises(AudioError, match=r"3\.0 s long, over the 2 s limit"):
        load_audio(data, max_seconds=2)
    monkeypatch.setenv(MAX_SECONDS_ENV, "1.5")
    with pytest.raises(AudioError, match=MAX_SECONDS_ENV):
        load_audio(data)
    monkeypatch.setenv(MAX_SECONDS_ENV, "lots")
    with pytest.raises(AudioError, match="not a number"):
        load_audio(data)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(AudioError, match="empty"):
        load_audio(tmp_path / "empty.wav")


@pytest.mark.parametrize(
    "samples,rate,message",
    [
        (np.zeros(0, np.float32), 16000, "empty"),
        (np.zeros(10, np.int16), 16000, "floating point"),
        (np.zeros((2, 2, 2), np.float32), 16000, "1-D"),
        (np.zeros(10, np.float32), 0, "sample rate 0 Hz"),
        (np.zeros(10, np.float32), 16.0, "sample rate 16.0 Hz"),
    ],
)
def test_check_audio(samples, rate, message):
    with pytest.raises(AudioError, match=message):
        check_audio(samples, rate)


def test_resample_refuses_absurd_rates():
    with pytest.raises(AudioError, match="sample rate"):
        resample(tone(0.1, 16000), 16000, 10**9)


class Pipe(io.RawIOBase):
    """A stream that cannot seek, like stdin."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


def test_pipes_and_positioned_streams_load():
    data = encode(tone(0.5, 16000), 16000, "FLAC")
    from_pipe, rate = load_audio(io.BufferedReader(Pipe(data)))
    assert rate == 16000 and len(from_pipe) == 8000
    positioned = io.BytesIO(b"header" + data)
    positioned.seek(6)
    np.testing.assert_array_equal(load_audio(positioned)[0], from_pipe)
