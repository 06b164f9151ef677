"""Speed of the mini dual tokenizer (and of the ASR that shares its encoder pass) on this CPU, next
to faster-whisper on the same Whisper tiny.en weights, measured in the same run.

    python bench/tokenizer.py [--seconds 10] [--repeat 3] [--json out.json]

Real-time factor = processing seconds / audio seconds (lower is better; best of --repeat). The
issue's target: tokenizing 10 s of audio in under 0.5 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle torch threads must not spin on a shared CPU

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from timing import best_time  # noqa: E402

from conftest import LIBRIVOX  # noqa: E402
from stepaudio.audio import load_audio  # noqa: E402
from stepaudio.models import resolve_model  # noqa: E402
from stepaudio.tokenizer.dual import DualTokenizer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the test audio")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from faster_whisper import WhisperModel

    speech = np.concatenate([load_audio(clip)[0] for clip in sorted(LIBRIVOX.glob("*.wav"))])
    audio = np.resize(speech, int(args.seconds * 16000))
    tokenizer = DualTokenizer.load("mini")
    transcriber = tokenizer.semantic.transcriber
    fw = WhisperModel(
        str(resolve_model("mini").require("whisper")), device="cpu", compute_type="float32", cpu_threads=2
    )

    def tokenize_and_transcribe():
        encoded = transcriber.encode(audio)
        tokenizer.semantic.quantize(encoded)
        tokenizer.acoustic.encode(audio)
        transcriber.transcribe(encoded)

    def fw_transcribe():
        segments, _ = fw.transcribe(audio, beam_size=1, language="en")
        list(segments)

    def fw_encode():
        from faster_whisper.audio import pad_or_trim

        features = fw.feature_extractor(audio)
        fw.encode(pad_or_trim(features))

    # stepaudio's rows are timed first: a CTranslate2 model that has run keeps its OpenMP threads busy
    # while it lives, which doubles torch's times on 2 cores
    rows = [
        ("stepaudio dual tokenizer (semantic + acoustic)", lambda: tokenizer.encode(audio, 16000)),
        ("stepaudio semantic (Whisper encoder + k-means)", lambda: tokenizer.semantic.encode(audio)),
        ("stepaudio acoustic (40 ms log-mel codebook)", lambda: tokenizer.acoustic.encode(audio)),
        ("stepaudio tokens + ASR from one encoder pass", tokenize_and_transcribe),
        ("ref: faster-whisper encoder, float32", fw_encode),
        ("ref: faster-whisper transcription, greedy float32", fw_transcribe),
    ]
    results = [{"task": name, "seconds": best_time(fn, args.repeat)} for name, fn in rows]
    print(f"{args.seconds:.0f} s of LibriVox speech, 2 threads; RTF = processing s / audio s (lower is better)")
    print(f"{'task':<52} {'s':>7} {'RTF':>7}")
    for row in results:
        print(f"{row['task']:<52} {row['seconds']:>7.3f} {row['seconds'] / args.seconds:>7.3f}")
    dual, both, fw_enc, fw_asr = (results[i]["seconds"] for i in (0, 3, 4, 5))
    print(f"dual tokenizer vs faster-whisper's encoder alone: {dual / fw_enc:.2f}x the time")
    print(f"tokens + ASR vs faster-whisper's transcription: {both / fw_asr:.2f}x the time")
    verdict = "met" if dual * 10 / args.seconds < 0.5 else "NOT met"
    print(f"target (10 s tokenized in < 0.5 s): {dual * 10 / args.seconds:.3f} s per 10 s -> {verdict}")
    if args.json:
        args.json.write_text(json.dumps({"audio_seconds": args.seconds, "results": results}, indent=2))


if __name__ == "__main__":
    main()
