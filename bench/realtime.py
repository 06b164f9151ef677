"""The real-time voice loop on this machine: latency, speculation, context compression, barge-in, RTF.

    python bench/realtime.py [--conversation examples/conversation] [--tts auto|model|piper] [--rounds 2]
                             [--json out.json]

The example conversation (5 synthesised English turns, two with a hesitation inside) is replayed in
real time through `stepaudio simulate`'s machinery on one loaded engine: `--rounds` times with
speculative answers and as often without (alternating), then once with every turn cutting into the
previous answer 1 s after it began. Turns of the runs of one kind are pooled.

What "end of user speech" means: the end of the last 32 ms frame Silero calls speech (p >= 0.5) in the
user's recording, at the moment the simulated microphone sent it. The VAD only declares the turn over
after `end_ms` (500 ms) of silence, so latency from the end of speech includes that wait; latency from
the end-of-turn decision ("after turn end") is the pipeline's own part. Speculation starts the answer
at a `pause_ms` (64 ms) pause and can hide up to end_ms - pause_ms of the pipeline's work.

- latency: end of user speech -> first assistant audio at the player, median and p90 over the turns;
- commit rate: speculative answers committed / started (the rest were cancelled as the user went on);
- listening left: end-of-turn decision -> transcript ready (what the streaming listener had not yet done);
- compression: audio tokens the conversation would take (41.67/s, both sides) / text tokens kept;
- barge-in: from the decision (speech held barge_in_ms = 250 ms over the answer) to the output
  stopped, and from the start of the user's speech to the player going quiet (the player drops its
  queued audio at the barge-in's speech_started, as an OpenAI Realtime client does);
- loop RTF: seconds the listen, respond and speak stages worked / seconds of speech in and out.
The machine's load average is printed: other jobs on these 2 cores slow every stage alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep (see bench/asr.py)

from stepaudio.commands.lm_engine_options import add_lm_engine_args, add_tts_engine_args  # noqa: E402
from stepaudio.commands.voice_chat_options import TTS_CHOICES, load_engine  # noqa: E402
from stepaudio.realtime.session import MILESTONES, RealtimeSession, SessionConfig  # noqa: E402
from stepaudio.realtime.simulate import load_conversation, simulate, speech_span_by_vad  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "conversation"
BARGE_IN_AFTER_MS = 1000
SPLIT_LABELS = (
    "transcript ready",
    "LM first token",
    "first sentence (TTS starts)",
    "TTS first chunk",
    "first audio sent",
)


async def run(engine, conversation, config: SessionConfig) -> dict:
    session = RealtimeSession(engine, config)
    result = await simulate(session, conversation, speech_span_by_vad(engine.vad))
    metrics = session.metrics
    user_seconds = sum(len(turn.audio) for turn in conversation.turns) / 16_000
    assistant_seconds = sum(len(pcm) for _, pcm, _ in result.player.chunks) / (result.player.rate or 1)
    return {
        "latency_ms": [turn["latency_ms"] for turn in result.turns if "latency_ms" in turn],
        "after_turn_end_ms": [turn["after_turn_end_ms"] for turn in result.turns if "after_turn_end_ms" in turn],
        "listen_after_end_ms": [round(ms) for ms in metrics.listen_after_end_ms],
        "vad_decision_ms": [turn["vad_decision_ms"] for turn in result.turns if "vad_decision_ms" in turn],
        **{
            f"{name}_ms": [
                turn["after_decision_ms"][name] for turn in result.turns if name in turn.get("after_decision_ms", {})
            ]
            for name in MILESTONES
        },
        "speculations": metrics.speculations,
        "committed": metrics.committed,
        "compression_ratio": session.context.compression_ratio(),
        "barge_in_ms": [round(ms, 1) for ms in metrics.barge_in_ms],
        "barge_in_stop_ms": [turn["barge_in_stop_ms"] for turn in result.turns if "barge_in_stop_ms" in turn],
        "stage_seconds": metrics.stage_seconds,
        "rtf": sum(metrics.stage_seconds.values()) / (user_seconds + assistant_seconds),
        "answers": [(turn.get("transcript"), turn.get("response_text"), turn.get("status")) for turn in result.turns],
    }


def pool(total: dict | None, result: dict) -> dict:
    """Results of several runs of one kind together: lists joined, counts and seconds added, ratios averaged."""
    if total is None:
        return result | {"runs": 1}
    pooled = {"runs": total["runs"] + 1}
    for key, value in result.items():
        if isinstance(value, dict):
            pooled[key] = {k: total[key][k] + v for k, v in value.items()}
        elif isinstance(value, float):
            pooled[key] = (total[key] * total["runs"] + value) / pooled["runs"]
        else:
            pooled[key] = total[key] + value
    return pooled


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.0f} / {p90(values):6.0f}" if values else "     - /      -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversation", default=str(EXAMPLE), help="conversation folder or JSON (default: example)")
    parser.add_argument("--model", default="mini")
    parser.add_argument("--tts", choices=TTS_CHOICES, default="auto")
    parser.add_argument("--voice")
    parser.add_argument("--rounds", type=int, default=2, help="runs with and without speculation (default: 2)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    add_lm_engine_args(parser, "the chat LM")
    add_tts_engine_args(parser)
    args = parser.parse_args()

    conversation = load_conversation(args.conversation)
    engine = load_engine(args, say=lambda line: print(line, file=sys.stderr))
    barge_in = replace(
        conversation,
        turns=[
            replace(turn, barge_in_after_ms=BARGE_IN_AFTER_MS if i else None)
            for i, turn in enumerate(conversation.turns)
        ],
    )
    plan = []
    for round_ in range(args.rounds):  # on and off alternate, so a change in the machine's load hits both
        pair = [("speculation on", SessionConfig()), ("speculation off", SessionConfig(speculative=False))]
        plan += [(name, conversation, config) for name, config in (pair if round_ % 2 == 0 else pair[::-1])]
    plan.append(("barge-in", barge_in, SessionConfig()))
    runs: dict[str, dict] = {}
    for name, convo, config in plan:
        print(f"running: {name} (load average {os.getloadavg()[0]:.1f})", file=sys.stderr)
        runs[name] = pool(runs.get(name), asyncio.run(run(engine, convo, config)))

    on, off, cut = runs["speculation on"], runs["speculation off"], runs["barge-in"]
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; tts: {type(engine.speaker).__name__}")
    print(f"{'(ms, median / p90)':38} {'speculation on':>16} {'speculation off':>16}")
    for label, key in (
        ("end of user speech -> first audio", "latency_ms"),
        ("end-of-turn decision -> first audio", "after_turn_end_ms"),
        ("listening left after end of turn", "listen_after_end_ms"),
    ):
        print(f"{label:38} {spread(on[key]):>16} {spread(off[key]):>16}")
    print("the split (ms after the end-of-turn decision; negative: done before it, during the pause):")
    rows = [("end of speech -> decision (VAD)", "vad_decision_ms")]
    for label, key in rows + [(label, f"{name}_ms") for label, name in zip(SPLIT_LABELS, MILESTONES, strict=True)]:
        print(f"  {label:36} {spread(on[key]):>16} {spread(off[key]):>16}")
    saved = statistics.median(off["latency_ms"]) - statistics.median(on["latency_ms"])
    print(f"latency saved by speculation (median): {saved:.0f} ms")
    rate = on["committed"] / on["speculations"] if on["speculations"] else 0.0
    print(f"speculation commit rate: {on['committed']}/{on['speculations']} = {rate:.0%}")
    print(f"context compression (audio tokens / text tokens): {on['compression_ratio']:.1f}:1")
    for label, key in (
        ("decided -> output stopped", "barge_in_ms"),
        ("user speech start -> player quiet", "barge_in_stop_ms"),
    ):
        values = cut[key] + on[key] + off[key]
        if values:
            median, worst = statistics.median(values), max(values)
            print(f"barge-in, {label}: median {median:.0f} ms, max {worst:.0f} ms (n={len(values)})")
    stages = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in on["stage_seconds"].items())
    print(f"loop RTF (stage seconds / speech seconds in and out): {on['rtf']:.2f} ({stages})")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")


if __name__ == "__main__":
    main()
