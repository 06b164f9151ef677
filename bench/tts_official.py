"""What sentence-by-sentence streaming changes against the release's call, with official weights: a measurement
on the tiny checkpoints of the official goldens (tests/reference/goldens/tts_e2e_fp32), not a claim about the
real model, whose LM would say other tokens for other sentences.

    python bench/tts_official.py [--json out.json]

- pipeline: `TTS.synthesize` (the release's call: the whole text in one LM call, one offline flow call)
  against `TTS.stream_sentences` (`stepaudio tts --stream`, the real-time pipeline) on the goldens' text:
  LM calls, tokens, how many of the release's tokens come out at the same places, and the log-mel distance
  of the two audios over their common frames;
- decoder: the same N tokens (the golden call's, repeated) decoded in one offline flow call against the
  streaming decoder fed token by token (growing windows re-read with at most 100 tokens of left context,
  cross-faded): log-mel distance and the waveform's signal-to-difference ratio;
- voice: the flow's mel from the voice conditioned as the pipeline did before #33 point 3 (the trimmed,
  peak-normalised 16 kHz prompt resampled with soxr, its mel cut to the tokens' span, CAMPPlus of it)
  against the release's conditioning (the whole recording, the release's resampler), on the same tokens.
CPU, float32; the flow's noise and HiFT's draws are the decoder's seeded tapes, the same in both columns.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from golden_tts import GoldenPromptTokenizer, golden, write_golden_tts  # noqa: E402
from stepaudio.audio import mel_spectrogram  # noqa: E402
from stepaudio.tokenizer.dual import DualTokenizer  # noqa: E402
from stepaudio.tts import TTS  # noqa: E402


def log_mel_distance(a: np.ndarray, b: np.ndarray) -> dict:
    """Mean and max absolute difference of the two audios' log-mels (natural log units) over common frames."""
    ma, mb = mel_spectrogram(a), mel_spectrogram(b)
    n = min(ma.shape[1], mb.shape[1])
    diff = (ma[:, :n] - mb[:, :n]).abs()
    return {"frames": n, "log_mel_l1": float(diff.mean()), "log_mel_max": float(diff.max())}


def snr_db(reference: np.ndarray, other: np.ndarray) -> float:
    n = min(len(reference), len(other))
    noise = float(np.sum((reference[:n] - other[:n]) ** 2))
    return float("inf") if noise == 0 else 10 * np.log10(float(np.sum(reference[:n] ** 2)) / noise)


def load(root: Path) -> TTS:
    DualTokenizer.load = classmethod(lambda cls, model: GoldenPromptTokenizer())
    return TTS.load(root, "cpu")


def pipeline(tts: TTS, text: str, speaker: str) -> dict:
    calls, generate = [], tts.lm.generate

    def recording(prompt, *args, **kwargs):
        calls.append([])
        for token in generate(prompt, *args, **kwargs):
            calls[-1].append(token)
            yield token

    tts.lm.generate = recording
    released, _ = tts.synthesize(text, voice=speaker, seed=0)
    release_tokens = calls.pop()
    streamed = np.concatenate(list(tts.stream_sentences(text, voice=speaker, seed=0)))
    streamed_tokens = [t for call in calls for t in call]
    tts.lm.generate = generate
    same = sum(a == b for a, b in zip(release_tokens, streamed_tokens, strict=False))
    return {
        "text": text,
        "release": {"lm_calls": 1, "tokens": len(release_tokens), "seconds": len(released) / tts.sample_rate},
        "streamed": {
            "lm_calls": len(calls),
            "tokens": len(streamed_tokens),
            "seconds": len(streamed) / tts.sample_rate,
        },
        "tokens_at_the_release_places": same,
        **log_mel_distance(released, streamed),
    }


def decoder(tts: TTS, speaker: str, chain: list[int], lengths: list[int]) -> list[dict]:
    voice = tts.prepare_voice(tts.voices.get(speaker), tts.decoder).decoder_voice
    rows = []
    for n in lengths:
        tokens = (chain * (n // len(chain) + 1))[:n]
        offline, _ = tts.decoder.decode(tokens, voice)
        stream = tts.decoder.stream(voice)
        pieces = [stream.step([t]) for t in tokens] + [stream.flush()]
        streamed = np.concatenate(pieces)
        rows.append({"tokens": n, "snr_db": snr_db(offline, streamed), **log_mel_distance(offline, streamed)})
    return rows


def voice(tts: TTS, speaker: str, chain: list[int]) -> dict:
    from stepaudio.tts.voices import condition_prompt

    entry = tts.voices.get(speaker)
    released = tts.prepare_voice(entry, tts.decoder).decoder_voice
    recording, rate = entry.recording()
    before = tts.decoder.voice(condition_prompt(recording, rate), 16_000, released.tokens)
    out = {}
    for name, v in (("released", released), ("before", before)):
        stream = tts.decoder.stream(v)
        stream.add(chain)
        out[name] = stream.flush()
    return {"prompt_frames": {"released": released.mel.shape[1], "before": before.mel.shape[1]}} | log_mel_distance(
        out["released"], out["before"]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 400, 1000], help="decoder: tokens per run")
    args = parser.parse_args()
    torch.set_num_threads(2)
    tensors, meta = golden("tts_e2e_fp32")
    chain = (tensors["output_ids"][:-1] - 65536).tolist()
    with tempfile.TemporaryDirectory() as tmp:
        import os

        os.environ["STEPAUDIO_VOICES_DIR"] = str(Path(tmp) / "user")
        tts = load(write_golden_tts(Path(tmp)))
        results = {
            "pipeline": pipeline(tts, meta["text"], meta["speaker"]),
            "decoder": decoder(tts, meta["speaker"], chain, args.lengths),
            "voice": voice(tts, meta["speaker"], chain),
        }
    p = results["pipeline"]
    print("official call vs the streamed path, tiny golden checkpoints (tests/reference), CPU, fp32")
    print(
        f"pipeline  {p['text']!r}: release {p['release']['lm_calls']} LM call, {p['release']['tokens']} tokens, "
        f"{p['release']['seconds']:.2f} s; streamed {p['streamed']['lm_calls']} LM calls, {p['streamed']['tokens']} "
        f"tokens, {p['streamed']['seconds']:.2f} s; {p['tokens_at_the_release_places']}/{p['release']['tokens']} "
        f"tokens at the release's places; log-mel L1 {p['log_mel_l1']:.3f} (max {p['log_mel_max']:.2f}) over "
        f"{p['frames']} common frames"
    )
    for row in results["decoder"]:
        print(
            f"decoder   {row['tokens']} tokens ({row['tokens'] / 41.667:.1f} s), offline vs streamed token by token: "
            f"log-mel L1 {row['log_mel_l1']:.4f} (max {row['log_mel_max']:.2f}), waveform SNR {row['snr_db']:.1f} dB"
        )
    v = results["voice"]
    print(
        f"voice     conditioning before #33.3 ({v['prompt_frames']['before']} prompt frames) vs as released "
        f"({v['prompt_frames']['released']}), same {len(chain)} tokens: log-mel L1 {v['log_mel_l1']:.3f} "
        f"(max {v['log_mel_max']:.2f})"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
