"""Front-end throughput, in seconds of audio processed per second, next to the reference
implementations measured in the same run on the same audio.

    python bench/frontend.py [--seconds 60] [--repeat 3] [--json out.json]

References: kaldi-native-fbank + funasr's apply_lfr/apply_cmvn (the Paraformer front end), a plain
numpy restatement of Kaldi fbank (as in the tests), openai-whisper's log_mel_spectrogram, and the
CosyVoice decoder mel built from librosa.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from timing import best_time  # noqa: E402

from conftest import LIBRIVOX, speechlike  # noqa: E402
from stepaudio.audio import (  # noqa: E402
    Cmvn,
    LogMelStream,
    ParaformerFrontend,
    kaldi_fbank,
    load_audio,
    log_mel_spectrogram,
    mel_spectrogram,
    resample,
)

REFERENCE_MARK = "ref"


def test_audio(seconds: float) -> np.ndarray:
    """Real LibriVox speech repeated to the length asked for, or synthetic speech-like sound."""
    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        return speechlike(seconds, 16000)
    speech = np.concatenate([load_audio(clip)[0] for clip in clips])
    return np.resize(speech, int(seconds * 16000))


def throughput(fn, audio_seconds: float, repeat: int) -> float:
    return audio_seconds / best_time(fn, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the test audio")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per implementation (best is kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import librosa
    import whisper
    from funasr.frontends.wav_frontend import apply_cmvn, apply_lfr

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "audio"))
    from test_fbank import kaldi_fbank_reference
    from test_mel import librosa_decoder_mel

    x16 = test_audio(args.seconds)
    x22 = resample(x16, 16000, 22050)
    secs = len(x16) / 16000
    rng = np.random.default_rng(0)
    cmvn = Cmvn(-rng.uniform(8, 12, 560).astype(np.float32), rng.uniform(0.1, 0.3, 560).astype(np.float32))
    cmvn_table = torch.from_numpy(np.stack([cmvn.shift, cmvn.scale]))
    frontend = ParaformerFrontend(cmvn)

    def paraformer_streaming():
        stream = frontend.stream()
        for start in range(0, len(x16), 3840):  # 240 ms steps, as the official streaming encoder
            stream.step(x16[start : start + 3840])
        stream.flush()

    def whisper_streaming(n_mels):
        stream = LogMelStream(n_mels)
        for start in range(0, len(x16), 1600):  # 100 ms steps
            stream.step(x16[start : start + 1600])
        stream.flush()

    short = x16[: 16000 * 5]  # the numpy Kaldi restatement is slow; time it on 5 s
    rows = [
        ("fbank+LFR+CMVN", "stepaudio ParaformerFrontend", throughput(lambda: frontend(x16), secs, args.repeat)),
        ("fbank+LFR+CMVN", "stepaudio streaming, 240 ms chunks", throughput(paraformer_streaming, secs, args.repeat)),
        (
            "fbank+LFR+CMVN",
            "ref: knf fbank + funasr apply_lfr/apply_cmvn",
            throughput(
                lambda: apply_cmvn(apply_lfr(torch.from_numpy(kaldi_fbank(x16 * 32768)), 7, 6), cmvn_table),
                secs,
                args.repeat,
            ),
        ),
        (
            "fbank+LFR+CMVN",
            "numpy Kaldi restatement (fbank only)",
            throughput(lambda: kaldi_fbank_reference(short * 32768), len(short) / 16000, 1),
        ),
    ]
    tensor = torch.from_numpy(x16)
    for n_mels in (80, 128):
        rows += [
            (
                f"log-mel {n_mels}",
                "stepaudio log_mel_spectrogram",
                throughput(lambda n_mels=n_mels: log_mel_spectrogram(x16, n_mels), secs, args.repeat),
            ),
            (
                f"log-mel {n_mels}",
                "stepaudio streaming, 100 ms chunks",
                throughput(lambda n_mels=n_mels: whisper_streaming(n_mels), secs, args.repeat),
            ),
            (
                f"log-mel {n_mels}",
                "ref: openai-whisper log_mel_spectrogram",
                throughput(lambda n_mels=n_mels: whisper.log_mel_spectrogram(tensor, n_mels), secs, args.repeat),
            ),
        ]
    rows += [
        ("decoder mel", "stepaudio mel_spectrogram", throughput(lambda: mel_spectrogram(x22), secs, args.repeat)),
        (
            "decoder mel",
            "ref: librosa-built CosyVoice mel",
            throughput(lambda: librosa_decoder_mel(x22), secs, args.repeat),
        ),
    ]

    print(
        f"{secs:.0f} s of 16 kHz audio, torch threads {torch.get_num_threads()}, "
        f"librosa {librosa.__version__}; x = audio seconds per second (higher is better)"
    )
    print(f"{'feature':<16} {'implementation':<42} {'x realtime':>11} {'vs ' + REFERENCE_MARK:>9}")
    reference = {feature: speed for feature, name, speed in rows if name.startswith(REFERENCE_MARK)}
    results = []
    for feature, name, speed in rows:
        ratio = speed / reference[feature]
        print(f"{feature:<16} {name:<42} {speed:>11.0f} {ratio:>8.2f}x")
        results.append(
            {"feature": feature, "implementation": name, "audio_seconds_per_second": speed, "ratio_to_reference": ratio}
        )
    if args.json:
        args.json.write_text(json.dumps({"audio_seconds": secs, "results": results}, indent=2))


if __name__ == "__main__":
    main()
