"""How intelligible the mini model's speech measures today: each figure once, with the command that
measured it. The commands choose their speaker from these (`speaks_with_piper`, `stepaudio resynth`'s
note); retraining mini means rerunning the command and updating the figure here and in docs/status.md."""

from __future__ import annotations

# The word error rate (Whisper's judgement against the text) a speaker must reach to speak by default.
INTELLIGIBLE_WER = 0.15

# The mini TTS LM's speech of the 30 test sentences (`assets/mini/tts/report.json` holds the run).
MINI_TTS_WER = 1.41
MINI_TTS_BENCH = "python bench/tts.py --corpus data/corpus-v1 --tag-sentences 5"

# mini `resynth` (its tokenizer, then its flow and vocoder) of the recipe's English eval set.
MINI_RESYNTH_WER = 0.49
MINI_RESYNTH_ORIGINAL_WER = 0.16  # the same judge on the original audio of that set
MINI_RESYNTH_BENCH = "python bench/decoder.py --corpus data/eval-en"


def mini_tts_intelligible() -> bool:
    """Whether the mini TTS LM may speak by default (until then, a Piper voice speaks for mini)."""
    return MINI_TTS_WER <= INTELLIGIBLE_WER
