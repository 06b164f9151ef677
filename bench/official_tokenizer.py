"""Speed of the official-architecture tokenizers at full size (random weights), next to the reference
implementations running the same weights on the same audio in the same run.

    python bench/official_tokenizer.py [--seconds 10] [--repeat 2] [--json out.json]

Semantic (vq02): ours vs FunASR's WavFrontendOnline + SANMEncoderChunkOpt driven as Step-Audio's
tokenizer drives them (tests/tokenizer/official_reference.py). Acoustic (vq06): ours (torch, weights
read from the ONNX file) vs onnxruntime on that file, as the official tokenizer runs it. Both sides get
the same threads (torch's default). Prints real-time factors (processing time / audio time) and ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "tokenizer"))

from conftest import LIBRIVOX, speechlike  # noqa: E402
from official_reference import official_vq02, official_vq06, onnx_session, write_official_dir  # noqa: E402
from stepaudio.audio import load_audio  # noqa: E402
from stepaudio.tokenizer.s3 import AcousticTokenizer  # noqa: E402
from stepaudio.tokenizer.semantic import SemanticTokenizer  # noqa: E402


def best_time(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    clips = sorted(LIBRIVOX.glob("*.wav"))
    speech = np.concatenate([load_audio(c, 16000)[0] for c in clips]) if clips else speechlike(20, 16000)
    audio = np.resize(speech, int(args.seconds * 16000))

    with tempfile.TemporaryDirectory() as tmp:
        print("writing full-size random checkpoints (Paraformer encoder 50x512, S3 6x1280) ...", flush=True)
        files = write_official_dir(Path(tmp), full_size=True)
        semantic = SemanticTokenizer.from_pretrained(files.root)
        acoustic = AcousticTokenizer.from_pretrained(files.root)
        session = onnx_session(files.folder / "speech_tokenizer_v1.onnx", threads=torch.get_num_threads())

        rows = {}
        ours, our_tokens = best_time(lambda: semantic.encode(audio), args.repeat)
        ref, (_, ref_tokens) = best_time(lambda: official_vq02(files, [(audio, True)]), args.repeat)
        rows["semantic"] = {"ours_rtf": ours / args.seconds, "funasr_rtf": ref / args.seconds, "speedup": ref / ours}
        rows["semantic"]["same_tokens"] = bool(np.array_equal(our_tokens, ref_tokens))
        ours, our_tokens = best_time(lambda: acoustic.encode(audio), args.repeat)
        ref, ref_tokens = best_time(lambda: official_vq06(session, audio), args.repeat)
        rows["acoustic"] = {
            "ours_rtf": ours / args.seconds,
            "onnxruntime_rtf": ref / args.seconds,
            "speedup": ref / ours,
        }
        rows["acoustic"]["same_tokens"] = bool(np.array_equal(our_tokens, ref_tokens))

    print(f"{args.seconds:g} s of audio, torch threads {torch.get_num_threads()}")
    for name, row in rows.items():
        cells = ", ".join(
            f"{key} {value:.3f}" if isinstance(value, float) else f"{key} {value}" for key, value in row.items()
        )
        print(f"  {name:9s} {cells}")
    if args.json:
        args.json.write_text(json.dumps({"seconds": args.seconds, **rows}, indent=2))


if __name__ == "__main__":
    main()
