"""Text-to-speech quality and speed, judged by models nobody here trained.

    python bench/tts.py [--model mini] [--corpus data/corpus-v1] [--json out.json]
    python bench/tts.py --lm runs/tts --decoder DIR    # a trained export before it is packaged

- intelligibility: the held-out English test sentences of the corpus (30 texts), spoken in the default
  voice, transcribed by Whisper tiny.en (faster-whisper): WER (target <= 15 %);
- duration: each output against the expected duration of its text (target: within 0.5x-2x), and
  the mean duration with the speed tags against untagged (target: 快速 >= 20 % shorter, 慢速 >= 20 % longer),
  next to that of the decoder's speed option at 0.8 and 1.25;
- prompt leakage: outputs whose transcript holds three words in a row of the voice's prompt transcript;
- cloning: GE2E similarity of cloned speech to its prompt and to another built-in voice's prompt;
- speed on this CPU: real-time factor and time to the first audio chunk (target RTF < 1, < 500 ms).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from stepaudio.audio import resample
from stepaudio.models import resolve_model
from stepaudio.tts import TTS, expected_seconds
from stepaudio.tts.text import normalize as normalize_text
from stepaudio.tts.text import split_sentences


def load_tts(args) -> TTS:
    if not (args.lm or args.decoder):
        return TTS.load(args.model)
    from stepaudio.decoder.speech_decoder import SpeechDecoder
    from stepaudio.tokenizer.dual import DualTokenizer, mini_tokens_tag
    from stepaudio.tts.pipeline import MINI_DEFAULT_VOICE
    from stepaudio.tts.speech_lm import SpeechLM
    from stepaudio.tts.voices import VoiceRegistry

    mini = resolve_model("mini")
    lm = SpeechLM.from_mini(args.lm or mini.require("tts_lm"))
    decoder = SpeechDecoder.from_directory(args.decoder, mini.require("speaker")) if args.decoder else None
    decoder = decoder or SpeechDecoder.load("mini")
    voices = VoiceRegistry.load(mini.require("voices"))
    return TTS(lm, decoder, voices, mini_tokens_tag(), MINI_DEFAULT_VOICE, lambda: DualTokenizer.load("mini"))


def test_sentences(corpus: Path) -> list[str]:
    from stepaudio.train.data.manifest import read_split

    return list(dict.fromkeys(u.text for u in read_split(corpus, "test") if u.language == "en"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mini", help="'mini' or a directory of official checkpoints")
    parser.add_argument("--lm", type=Path, help="a mini-layout TTS LM export to use instead of the packaged one")
    parser.add_argument("--decoder", type=Path, help="a decoder directory (flow.*, hift.*) instead of mini's")
    parser.add_argument("--corpus", type=Path, default=Path("data/corpus-v1"), help="corpus with an English test split")
    parser.add_argument("--sentences", type=int, default=30, help="test sentences for WER and durations")
    parser.add_argument("--tag-sentences", type=int, default=10, help="sentences for the speed-tag durations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    tts = load_tts(args)
    sentences = test_sentences(args.corpus)[: args.sentences]
    results: dict = {"voice": tts.default_voice, "sentences": len(sentences)}

    def speak(text, **kwargs) -> np.ndarray:
        return tts.synthesize(text, seed=args.seed, **kwargs)[0]

    # All speech is made (and timed) before the judge runs: a CTranslate2 model that has run keeps its
    # own OpenMP threads busy, which doubled torch's times on 2 cores (first chunk 0.27 s -> 0.56 s).
    outputs, spent = [], 0.0
    for text in sentences:
        start = time.perf_counter()
        outputs.append(speak(text))
        spent += time.perf_counter() - start
    results["rtf_offline"] = spent / max(sum(len(pcm) for pcm in outputs) / tts.sample_rate, 1e-9)

    # streaming: time to the first chunk and real-time factor, sentence by sentence
    firsts, factors = [], []
    for text in sentences[:5]:
        start = time.perf_counter()
        first, total = None, 0
        for chunk in tts.stream(text, seed=args.seed):
            first = first if first is not None else time.perf_counter() - start
            total += len(chunk)
        factors.append((time.perf_counter() - start) / max(total / tts.sample_rate, 1e-9))
        firsts.append(first or 0.0)
    results["first_chunk_s"] = float(np.median(firsts))
    results["rtf_stream"] = float(np.median(factors))

    # speed tags
    tagged = sentences[: args.tag_sentences]
    base = np.mean([len(speak(t)) for t in tagged])
    results["tag_duration_vs_untagged"] = {
        tag: float(np.mean([len(speak(t, tags=[tag])) for t in tagged]) / base)
        for tag in ("快速1", "快速2", "慢速1", "慢速2")
    }
    results["speed_option_vs_normal"] = {  # the decoder's time-scaling (--speed), for comparison
        str(speed): float(np.mean([len(speak(t, speed=speed)) for t in tagged]) / base) for speed in (0.8, 1.25)
    }

    # cloning: each English voice's prompt cloned, against another built-in voice
    english_voices = [n for n in ("joe", "slt", "awb") if n in tts.voices.names()]
    clones = []  # (own prompt, rival prompt, cloned speech)
    for i, name in enumerate(english_voices):
        entry, other = tts.voices.get(name), tts.voices.get(english_voices[(i + 1) % len(english_voices)])
        for text in sentences[:5]:
            clones.append((entry, other, speak(text, prompt_wav=entry.wav, prompt_text=entry.transcript)))

    # judged: intelligibility, duration bounds, leakage (default voice), speaker similarity
    import jiwer
    from judge import EnglishJudge

    from stepaudio.decoder.speaker import GE2E

    judge = EnglishJudge()
    speaker = GE2E.from_resemblyzer(resolve_model("mini").require("speaker"))
    english = judge.normalize

    def transcribe(pcm: np.ndarray) -> str:
        return judge(resample(pcm, tts.sample_rate, 16000))

    prompt_words = english(tts.voices.get(tts.default_voice).transcript).split()
    prompt_trigrams = {" ".join(prompt_words[i : i + 3]) for i in range(len(prompt_words) - 2)}
    references, hypotheses, ratios, leaks = [], [], [], 0
    for text, pcm in zip(sentences, outputs, strict=True):
        seconds = len(pcm) / tts.sample_rate
        # the pipeline caps each sentence at twice its own expected duration
        expected = sum(expected_seconds(normalize_text(part, "en"), "en") for part in split_sentences(text))
        ratios.append(seconds / expected)
        hypothesis = transcribe(pcm) if len(pcm) else ""
        references.append(english(text))
        hypotheses.append(hypothesis)
        leaks += any(trigram in hypothesis for trigram in prompt_trigrams)
        print(f"{seconds:5.2f} s  {ratios[-1]:4.2f}x  {hypothesis!r}")
    results["wer"] = jiwer.wer(references, hypotheses)
    results["duration_ratio"] = {
        "min": min(ratios),
        "max": max(ratios),
        "within_0.5_2": float(np.mean([0.5 <= r <= 2 for r in ratios])),
    }
    results["prompt_leaks"] = leaks
    prompts = {name: speaker(tts.voices.get(name).samples()) for name in english_voices}  # once per voice
    gaps = []
    for entry, other, pcm in clones:
        embedding = speaker(resample(pcm, tts.sample_rate, 16000))
        gaps.append(float(embedding @ prompts[entry.name] - embedding @ prompts[other.name]))
    results["clone_similarity"] = {
        "own_minus_other_mean": float(np.mean(gaps)) if gaps else None,
        "own_higher": f"{sum(gap > 0 for gap in gaps)}/{len(gaps)}",
    }
    print(json.dumps(results, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
