"""ASR accuracy and speed: our torch Whisper tiny.en (what `stepaudio transcribe` runs) next to
faster-whisper on the same model files, measured in the same run.

    python bench/asr.py [--repeat 3] [--json out.json]

Accuracy: word error rate on the 5 LibriVox clips of pocketsphinx-testdata against their human
transcripts, after openai-whisper's EnglishTextNormalizer (the issue's target: ours within 0.02
of faster-whisper's). Speed: real-time factor (processing seconds per audio second, lower is
better; best of --repeat) of the whole transcription of the clips, and of the encoder alone on
one 30-s window (what the mini semantic tokenizer pays per window); "speed vs ref" above 1 means
faster than faster-whisper in float32, the same arithmetic as ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

# Idle OpenMP workers sleep instead of spinning: on a shared, oversubscribed CPU, spinning workers
# of one runtime starve the others' and torch's per-token decoding slowed ~10x here. Set before
# torch and CTranslate2 start their thread pools; applies to both sides alike.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from timing import best_time  # noqa: E402

from conftest import LIBRIVOX  # noqa: E402
from stepaudio.asr import Transcriber  # noqa: E402
from stepaudio.asr.whisper import mel_window  # noqa: E402
from stepaudio.audio import load_audio  # noqa: E402
from stepaudio.models import resolve_model  # noqa: E402


def human_transcripts() -> dict[str, str]:
    truth = {}
    for line in (LIBRIVOX / "transcription").read_text().splitlines():
        words, _, name = line.rpartition("(")
        truth[name.strip(" )")] = words.replace("<s>", "").replace("</s>", "").strip()
    return truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per system (best is kept)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import ctranslate2
    import jiwer
    from faster_whisper import WhisperModel
    from whisper.normalizers import EnglishTextNormalizer

    clips = sorted(LIBRIVOX.glob("*.wav"))
    if not clips:
        sys.exit("needs the LibriVox clips: apt-get install pocketsphinx-testdata")
    folder = resolve_model("mini").require("whisper")
    truth = human_transcripts()
    references = [truth[clip.stem] for clip in clips]
    audio = [load_audio(clip, 16000)[0] for clip in clips]
    seconds = sum(len(samples) for samples in audio) / 16000
    normalize = EnglishTextNormalizer()

    def measured(name: str, run) -> dict:
        hypotheses = run()
        wer = jiwer.wer([normalize(text) for text in references], [normalize(text) for text in hypotheses])
        return {"system": name, "wer": wer, "rtf": best_time(run, args.repeat) / seconds, "texts": hypotheses}

    # Every torch timing comes before the first CTranslate2 run: a CTranslate2 model that has run keeps its
    # OpenMP threads busy while it lives, which doubles torch's times on 2 cores.
    ours = Transcriber.load(folder)
    window = mel_window(ours.encode(audio[0]).mel, 0, 3000)[None]  # one 30-s window

    def encode_ours():
        with torch.inference_mode():
            ours.model.encoder(window)

    rows = [measured("stepaudio (torch float32, greedy)", lambda: [ours.transcribe(samples).text for samples in audio])]
    encoder_rows = [
        {"encoder": "stepaudio encoder (torch float32)", "seconds_per_window": best_time(encode_ours, args.repeat)}
    ]

    fw = {
        kind: WhisperModel(str(folder), device="cpu", compute_type=kind, cpu_threads=2) for kind in ("float32", "int8")
    }

    def faster_whisper(kind: str, beam_size: int):
        def run() -> list[str]:
            texts = []
            for samples in audio:
                segments, _ = fw[kind].transcribe(samples, beam_size=beam_size)
                texts.append("".join(segment.text for segment in segments).strip())
            return texts

        return run

    rows += [
        measured("ref: faster-whisper float32, greedy", faster_whisper("float32", 1)),
        measured("faster-whisper int8, greedy", faster_whisper("int8", 1)),
        measured("faster-whisper int8, beam 5 (its default)", faster_whisper("int8", 5)),
    ]
    window_array = window.numpy()  # StorageView.from_array does not copy: keep the array alive
    storage = ctranslate2.StorageView.from_array(window_array)
    encoder_rows += [
        {
            "encoder": f"{'ref: ' if kind == 'float32' else ''}faster-whisper encoder ({kind})",
            "seconds_per_window": best_time(lambda kind=kind: fw[kind].model.encode(storage), args.repeat),
        }
        for kind in fw
    ]

    print(f"{len(clips)} LibriVox clips, {seconds:.1f} s of speech; torch threads {torch.get_num_threads()}")
    print(f"{'system':<44} {'WER':>6} {'RTF':>7} {'speed vs ref':>13}")
    reference_rtf = rows[1]["rtf"]
    for row in rows:
        print(f"{row['system']:<44} {row['wer']:>6.3f} {row['rtf']:>7.3f} {reference_rtf / row['rtf']:>12.2f}x")
    gap = rows[0]["wer"] - rows[1]["wer"]
    verdict = "ok" if abs(gap) <= 0.02 else "MISSED"
    print(f"WER gap to faster-whisper greedy: {gap:+.3f} (target: within 0.02) -> {verdict}")
    print(f"{'encoder, one 30-s window':<44} {'s':>6} {'RTF':>7} {'speed vs ref':>13}")
    for row in encoder_rows:
        took, reference = row["seconds_per_window"], encoder_rows[1]["seconds_per_window"]
        print(f"{row['encoder']:<44} {took:>6.3f} {took / 30:>7.4f} {reference / took:>12.2f}x")
    for row in rows[:2]:
        print(f"\n{row['system']}:\n  " + "\n  ".join(row["texts"]))
    if args.json:
        result = {"audio_seconds": seconds, "transcription": rows, "encoder": encoder_rows}
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
