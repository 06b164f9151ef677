"""Speech decoder intelligibility, judged by an ASR nobody here trained (Whisper tiny.en run by
faster-whisper): word error rate of the original audio, of a Griffin-Lim rendering of the same
decoder mel (the floor any vocoder must beat), and of `stepaudio resynth` with the mini model.

    python bench/decoder.py [--corpus data/corpus-v1] [--json out.json]

Sets: the 5 LibriVox clips (real human speech) and, with --corpus, the held-out English test
sentences of a synthesised corpus in voices seen in training (the issue's target: resynth WER <= 15 %).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from asr import human_transcripts  # noqa: E402
from conftest import LIBRIVOX  # noqa: E402
from stepaudio.audio import decoder_mel as dm  # noqa: E402
from stepaudio.audio import load_audio, mel_spectrogram, resample  # noqa: E402
from stepaudio.errors import ModelNotFound  # noqa: E402
from stepaudio.models import resolve_model  # noqa: E402


def griffin_lim(samples16: np.ndarray) -> np.ndarray:
    """The decoder mel of the audio, inverted by NNLS + Griffin-Lim (librosa), back at 16 kHz."""
    import librosa

    mel = np.exp(mel_spectrogram(resample(samples16, 16000, dm.SAMPLE_RATE)).numpy())
    audio = librosa.feature.inverse.mel_to_audio(
        mel, sr=dm.SAMPLE_RATE, n_fft=dm.N_FFT, hop_length=dm.HOP_LENGTH, win_length=dm.WIN_LENGTH,
        power=1.0, fmin=dm.FMIN, fmax=dm.FMAX, n_iter=32,
    )  # fmt: skip
    return resample(audio.astype(np.float32), dm.SAMPLE_RATE, 16000)


def evaluation_sets(corpus: Path | None) -> dict[str, list[tuple[np.ndarray, str]]]:
    librivox = [(load_audio(LIBRIVOX / f"{name}.wav")[0], text) for name, text in human_transcripts().items()]
    sets = {"LibriVox (real)": librivox}
    if corpus:
        from stepaudio.train.data.manifest import manifest_dir, read_split

        train_voices = {u.voice for u in read_split(corpus, "train")}
        tests = [u for u in read_split(corpus, "test") if u.language == "en" and u.voice in train_voices]
        root = manifest_dir(corpus)
        sets["corpus test, en"] = [(load_audio(root / u.audio, 16000)[0], u.text) for u in tests]
    return sets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, help="a synthesised corpus (its English test split is used)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    import jiwer
    from faster_whisper import WhisperModel
    from whisper.normalizers import EnglishTextNormalizer

    judge = WhisperModel(
        str(resolve_model("mini").require("whisper")), device="cpu", compute_type="int8", cpu_threads=2
    )
    normalize = EnglishTextNormalizer()

    def transcribe(samples16: np.ndarray) -> str:
        return " ".join(segment.text for segment in judge.transcribe(samples16, beam_size=1, language="en")[0])

    renderings = {"original": lambda x: x, "Griffin-Lim of the decoder mel": griffin_lim}
    try:
        from stepaudio.decoder.speech_decoder import SpeechDecoder
        from stepaudio.tokenizer.dual import DualTokenizer

        decoder, tokenizer = SpeechDecoder.load("mini"), DualTokenizer.load("mini")

        def resynth(x: np.ndarray) -> np.ndarray:
            voice = decoder.voice(x, 16000, tokenizer.encode(x, 16000, prompt=True).interleaved)
            pcm, rate = decoder.decode(tokenizer.encode(x, 16000).interleaved, voice)
            return resample(pcm, rate, 16000)

        renderings["stepaudio resynth (mini)"] = resynth
    except ModelNotFound as error:
        print(f"resynth skipped: {error}")

    results = []
    for set_name, items in evaluation_sets(args.corpus).items():
        references = [normalize(text) for _, text in items]
        for name, render in renderings.items():
            hypotheses = [normalize(transcribe(render(samples))) for samples, _ in items]
            results.append({"set": set_name, "audio": name, "utterances": len(items),
                            "wer": jiwer.wer(references, hypotheses)})  # fmt: skip
    print(f"{'set':<18} {'audio':<34} {'n':>3} {'WER':>7}")
    for row in results:
        print(f"{row['set']:<18} {row['audio']:<34} {row['utterances']:>3} {row['wer']:>7.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
